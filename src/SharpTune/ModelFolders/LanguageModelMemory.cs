using SharpTune.Checkpoints;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Gguf;
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
    /// <summary>The model's architecture and its weights as <paramref name="storage"/> holds them, without reading a weight.</summary>
    public static (Models.Decoders.Common.IDecoderConfig Shape, long WeightBytes, bool Mapped) Weights(FoundLanguageModel found, WeightStorage storage)
    {
        string model = found.Base?.Path ?? BaseModel(found.FineTuned!);
        var shape = LanguageModel.ReadConfig(model);
        bool fullFineTune = found.FineTuned is { } folder && !Directory.Exists(Path.Combine(folder, LanguageModelFolder.AdapterFolder));
        if (fullFineTune) return (shape, MemoryEstimator.WeightBytes(shape, storage.Dtype), false); // the run's own dense weights; the base is only mapped
        if (storage.CheckFor(model).QuantizeTo is { } type) return (shape, MemoryEstimator.QuantizedWeightBytes(shape, type), false);
        bool mapped = storage.Stored && model.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);
        return (shape, mapped ? MemoryEstimator.StoredWeightBytes(GgufModelMap.Open(model)) : MemoryEstimator.WeightBytes(model, shape, storage.Dtype), mapped);
    }

    /// <summary>Inference over <paramref name="batch"/> sequences of <paramref name="tokens"/> tokens.</summary>
    public static MemoryEstimate Inference(FoundLanguageModel found, WeightStorage storage, int batch = 1, int tokens = 512)
    {
        var (shape, bytes, mapped) = Weights(found, storage);
        return MemoryEstimator.Inference(shape, bytes, storage.Dtype, batch, Math.Min(tokens, shape.MaxPositions), mapped);
    }

    /// <summary>
    /// Throws <see cref="NotEnoughMemoryException"/> when using the model for <paramref name="what"/> (<c>generate</c>)
    /// in <paramref name="dtype"/> needs more memory than is available, naming <c>--dtype bf16</c> when it would fit.
    /// </summary>
    public static MemoryEstimate EnsureFits(FoundLanguageModel found, WeightStorage storage, string what, int batch = 1, int tokens = 512)
    {
        var estimate = Inference(found, storage, batch, tokens);
        var available = AvailableMemory.Current();
        var remedies = new List<string>();
        bool gguf = (found.Base?.Path ?? BaseModel(found.FineTuned!)).EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);
        void Remedy(string option, WeightStorage other, string why)
        {
            long total = Inference(found, other, batch, tokens).Total;
            if (total < estimate.Total) remedies.Add($"{option} ({why}: about {ByteSize.Format(total)}{(total <= available.Bytes ? "" : ", still too much")})");
        }
        if (!storage.Stored && gguf) Remedy("--dtype stored", WeightStorage.AsStored, "the file's blocks as they are, memory-mapped");
        if (!storage.Stored && storage.Dtype == ScalarType.Float32) Remedy("--dtype bf16", ScalarType.BFloat16, "the weights in half the memory");
        if (!gguf && storage.QuantizeTo is null) Remedy("--dtype q8_0", WeightStorage.Quantized(GgufTensorType.Q8_0), "the matrices quantized on load, about a quarter of fp32");
        if (batch > 1) remedies.Add("a smaller --batch-size");
        estimate.EnsureFits(available, $"{what} with {found.Spec} ({storage})", remedies);
        return estimate;
    }

    static string BaseModel(string fineTunedFolder) => LanguageModelFolder.BaseModel(fineTunedFolder);
}
