using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>Writes a plain decoder's weights (Hugging Face keys) as a GGUF model file llama.cpp runs.</summary>
static class GgufModelWriter
{
    /// <summary>The largest finite f16 value: a weight beyond it would become infinity in an F16 file.</summary>
    const double HalfMax = 65504;

    /// <summary>llama.cpp's <c>llama_ftype</c> of a file whose matrices are <paramref name="type"/>.</summary>
    static uint FileType(GgufTensorType type) => type switch
    {
        GgufTensorType.F32 => 0, GgufTensorType.F16 => 1, GgufTensorType.Q8_0 => 7, GgufTensorType.BF16 => 32,
        _ => throw new ArgumentException($"no llama.cpp file type for {type}"),
    };

    /// <summary>Writes <paramref name="weights"/> (every key of the layout, no other) to <paramref name="path"/>; returns notes for the user.</summary>
    public static List<string> Write(GgufDecoderLayout layout, IReadOnlyDictionary<string, Tensor> weights, DecoderSource source,
        GgufTensorType type, string path)
    {
        var unknown = weights.Keys.Where(k => !layout.ByHfKey.ContainsKey(k)).ToList();
        if (unknown.Count > 0)
            throw new NotSupportedException(
                $"{unknown.Count} weight(s) of the model have no place in a {layout.Architecture} GGUF: {string.Join(", ", unknown.Take(6))}{(unknown.Count > 6 ? ", ..." : "")}");
        long vocab = layout.Tensors[0].Shape[0];
        var w = new GgufWriter()
            .Set("general.architecture", layout.Architecture)
            .Set("general.type", "model")
            .Set("general.name", Path.GetFileNameWithoutExtension(path))
            .Set("general.file_type", FileType(type));
        if (type == GgufTensorType.Q8_0) w.Set("general.quantization_version", 2u);
        foreach (var (key, value) in layout.Metadata) w.Set(key, value);
        foreach (var (key, value) in source.TokenizerMetadata((int)vocab)) w.Set(key, value);

        var notes = new List<string>();
        var fallback = new List<string>();
        using var scope = NewDisposeScope(); // the permuted and transposed copies live until the file is written
        foreach (var mapping in layout.Tensors)
        {
            if (!weights.TryGetValue(mapping.HfKey, out var hf)) throw new InvalidOperationException($"the model has no weight {mapping.HfKey}");
            if (!hf.shape.SequenceEqual(mapping.Shape))
                throw new InvalidOperationException($"{mapping.HfKey} has shape [{string.Join(", ", hf.shape)}], the config asks for [{string.Join(", ", mapping.Shape)}]");
            var tensor = GgufDecoderLayout.ToGguf(mapping, hf.detach());
            var tensorType = tensor.dim() == 1 ? GgufTensorType.F32 : type; // vectors stay F32, as llama.cpp's converter keeps them
            if (tensorType == GgufTensorType.Q8_0 && tensor.shape[^1] % GgufTensorTypes.BlockSize(GgufTensorType.Q8_0) != 0)
            {
                tensorType = GgufTensorType.F16;
                fallback.Add(mapping.GgufName);
            }
            if (tensorType == GgufTensorType.F16) CheckHalfRange(mapping.HfKey, tensor);
            w.AddTensor(mapping.GgufName, tensor, tensorType);
        }
        foreach (var (name, values) in layout.Extras) w.AddTensor(name, tensor(values), GgufTensorType.F32);
        if (layout.Architecture == "llama" && layout.Extras.Count == 0 && source.RopeFrequencyFactors() is { } factors)
        {
            w.AddTensor("rope_freqs.weight", factors, GgufTensorType.F32); // kept, so llama.cpp scales positions as the base did
            notes.Add("rope_freqs.weight (long-context rope factors) copied from the base GGUF");
        }
        w.Save(path);
        if (fallback.Count > 0)
            notes.Add($"{fallback.Count} matrix(es) stored as F16, their rows not a multiple of Q8_0's 32: {string.Join(", ", fallback.Take(4))}{(fallback.Count > 4 ? ", ..." : "")}");
        return notes;
    }

    static void CheckHalfRange(string key, Tensor tensor)
    {
        using var scope = NewDisposeScope();
        float largest = tensor.abs().max().item<float>();
        if (!(largest <= HalfMax))
            throw new ArgumentException($"{key} holds {largest}, beyond f16's range (±{HalfMax}); write the GGUF as bf16 or f32");
    }
}
