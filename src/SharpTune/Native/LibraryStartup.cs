using System.Runtime.CompilerServices;

namespace SharpTune.Native;

/// <summary>Runs when the SharpTune assembly is first used, before any of its code can load libtorch.</summary>
static class LibraryStartup
{
    // A library module initializer is the one place that runs before every entry into SharpTune's code
    // (CA2255 warns that it runs early; running early is its purpose here). Code that calls TorchSharp
    // before touching SharpTune calls MklDispatch.Ensure() first itself, as the CLI, bench and tests do.
#pragma warning disable CA2255
    [ModuleInitializer]
    internal static void Initialize() => MklDispatch.Ensure();
#pragma warning restore CA2255
}
