using SharpTune.Checkpoints;
using SharpTune.Models.Decoders;
using SharpTune.Models.Memory;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders;

/// <summary>
/// The memory a language model (a .gguf file, a Hugging Face folder, or a fine-tuned one over its base) needs to be used,
/// from its header or config alone, and the check every command that loads one makes before it does.
/// </summary>
public static class LanguageModelMemory
{
    /// <summary>The model's architecture and its weights in <paramref name="dtype"/>, without reading a weight.</summary>
    public static (Models.Decoders.Common.IDecoderConfig Shape, long WeightBytes) Weights(FoundLanguageModel found, ScalarType dtype)
    {
        string model = found.Base?.Path ?? BaseModel(found.FineTuned!);
        var shape = LanguageModel.ReadConfig(model);
        return (shape, MemoryEstimator.WeightBytes(model, shape, dtype));
    }

    /// <summary>Inference over <paramref name="batch"/> sequences of <paramref name="tokens"/> tokens.</summary>
    public static MemoryEstimate Inference(FoundLanguageModel found, ScalarType dtype, int batch = 1, int tokens = 512)
    {
        var (shape, bytes) = Weights(found, dtype);
        // A fully fine-tuned model's folder is loaded while its base (which gives the tokenizer) is held: both weights at once.
        if (found.FineTuned is { } folder && !Directory.Exists(Path.Combine(folder, LanguageModelFolder.AdapterFolder))) bytes *= 2;
        return MemoryEstimator.Inference(shape, bytes, dtype, batch, Math.Min(tokens, shape.MaxPositions));
    }

    /// <summary>
    /// Throws <see cref="NotEnoughMemoryException"/> when using the model for <paramref name="what"/> (<c>generate</c>)
    /// in <paramref name="dtype"/> needs more memory than is available, naming <c>--dtype bf16</c> when it would fit.
    /// </summary>
    public static MemoryEstimate EnsureFits(FoundLanguageModel found, ScalarType dtype, string what, int batch = 1, int tokens = 512)
    {
        var estimate = Inference(found, dtype, batch, tokens);
        var available = AvailableMemory.Current();
        var remedies = new List<string>();
        if (dtype == ScalarType.Float32)
        {
            long bf16 = Inference(found, ScalarType.BFloat16, batch, tokens).Total;
            remedies.Add($"--dtype bf16 (the weights in half the memory: about {ByteSize.Format(bf16)}{(bf16 <= available.Bytes ? "" : ", still too much")})");
        }
        if (batch > 1) remedies.Add("a smaller --batch-size");
        estimate.EnsureFits(available, $"{what} with {found.Spec} in {(dtype == ScalarType.BFloat16 ? "bf16" : dtype.ToString().ToLowerInvariant())}", remedies);
        return estimate;
    }

    static string BaseModel(string fineTunedFolder) => LanguageModelFolder.BaseModel(fineTunedFolder);
}
