using SharpTune.ModelFolders;
using SharpTune.Models.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Cli.Commands;

/// <summary>The memory check every command that loads a language model makes first (<see cref="LanguageModelMemory"/>).</summary>
static class ModelMemory
{
    /// <summary>
    /// Refuses, before a weight is read, a language model that would not fit in memory in <paramref name="dtype"/>.
    /// Anything else (an encoder, a missing path) is left to the load, which says what it is.
    /// </summary>
    public static void Check(string spec, WeightStorage dtype, string command, int batch = 1, int tokens = 512)
    {
        if (LanguageModelFolder.Find(spec) is { } found) LanguageModelMemory.EnsureFits(found, dtype, command, batch, tokens);
    }
}
