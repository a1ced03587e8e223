using System.Runtime.CompilerServices;
using SharpTune.Native;

namespace SharpTune.Tests.Native;

static class TestAssemblyStartup
{
    // Some tests call TorchSharp before any SharpTune type: install MKL's feature dispatch first, as an application would.
#pragma warning disable CA2255
    [ModuleInitializer]
    internal static void Initialize() => MklDispatch.Ensure();
#pragma warning restore CA2255
}
