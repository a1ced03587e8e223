using System.Runtime.InteropServices;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Gguf;
using SharpTune.Quantization;
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
        GgufTensorType.F32 => 0, GgufTensorType.F16 => 1, GgufTensorType.Q4_0 => 2, GgufTensorType.Q4_1 => 3, GgufTensorType.Q8_0 => 7,
        GgufTensorType.Q5_0 => 8, GgufTensorType.Q5_1 => 9, GgufTensorType.Q4_K => 15, GgufTensorType.Q5_K => 17, GgufTensorType.Q6_K => 18,
        GgufTensorType.BF16 => 32,
        _ => throw new ArgumentException($"no llama.cpp file type for {type}"),
    };

    /// <summary>Writes <paramref name="weights"/> (every key of the layout, no other) to <paramref name="path"/>; returns notes for the user.</summary>
    public static List<string> Write(GgufDecoderLayout layout, IReadOnlyDictionary<string, Tensor> weights, DecoderSource source,
        GgufTensorType type, string path) =>
        Write(layout, weights.ToDictionary(kv => kv.Key, kv => (Func<Tensor>)(() => kv.Value.alias())), source, _ => type, path);

    /// <summary>
    /// Writes the weights, each made only when the file reaches it (<see cref="MergedWeights.Lazy"/>: a new tensor, freed once
    /// encoded), matrices in the type <paramref name="typeOf"/> gives for each (a type whose blocks do not fit a row falls
    /// back to Q8_0, then F16, and is said), vectors in F32. Returns notes for the user.
    /// </summary>
    public static List<string> Write(GgufDecoderLayout layout, IReadOnlyDictionary<string, Func<Tensor>> weights, DecoderSource source,
        Func<GgufTensorMapping, GgufTensorType> typeOf, string path)
    {
        var unknown = weights.Keys.Where(k => !layout.ByHfKey.ContainsKey(k)).ToList();
        if (unknown.Count > 0)
            throw new NotSupportedException(
                $"{unknown.Count} weight(s) of the model have no place in a {layout.Architecture} GGUF: {string.Join(", ", unknown.Take(6))}{(unknown.Count > 6 ? ", ..." : "")}");
        long vocab = layout.Tensors[0].Shape[0];
        var types = layout.Tensors.Where(m => m.Shape.Length == 2).Select(m => Fitting(typeOf(m), m.Shape[^1])).ToList();
        var main = types.GroupBy(t => t).OrderByDescending(g => g.Count()).First().Key; // the file type llama.cpp reports
        var w = new GgufWriter()
            .Set("general.architecture", layout.Architecture)
            .Set("general.type", "model")
            .Set("general.name", Path.GetFileNameWithoutExtension(path))
            .Set("general.file_type", FileType(main));
        if (types.Any(t => GgufTensorTypes.BlockSize(t) > 1)) w.Set("general.quantization_version", 2u);
        foreach (var (key, value) in layout.Metadata) w.Set(key, value);
        foreach (var (key, value) in source.TokenizerMetadata((int)vocab)) w.Set(key, value);

        var notes = new List<string>();
        var fallback = new List<string>();
        foreach (var mapping in layout.Tensors)
        {
            if (!weights.TryGetValue(mapping.HfKey, out var make)) throw new InvalidOperationException($"the model has no weight {mapping.HfKey}");
            long[] shape = mapping.FileShape;
            var asked = mapping.Shape.Length == 1 ? GgufTensorType.F32 : typeOf(mapping); // vectors stay F32, as llama.cpp's converter keeps them
            var tensorType = Fitting(asked, shape[^1]);
            if (tensorType != asked) fallback.Add($"{mapping.GgufName} ({tensorType})");
            w.AddEncodedTensor(mapping.GgufName, shape, tensorType, () => Encode(mapping, make, tensorType));
        }
        foreach (var (name, values) in layout.Extras) w.AddTensor(name, tensor(values), GgufTensorType.F32);
        if (layout.Extras.Count == 0 && source.RopeFrequencyFactors() is { } factors)
        {
            w.AddTensor("rope_freqs.weight", factors, GgufTensorType.F32); // kept, so llama.cpp scales positions as the base did
            notes.Add("rope_freqs.weight (long-context rope factors) copied from the base GGUF");
        }
        w.Save(path);
        if (fallback.Count > 0)
            notes.Add($"{fallback.Count} matrix(es) in another type, their rows not a multiple of the asked type's block: {string.Join(", ", fallback.Take(4))}{(fallback.Count > 4 ? ", ..." : "")}");
        return notes;
    }

    /// <summary>The type itself when its blocks divide a row of <paramref name="columns"/>, else Q8_0, else F16 (as llama.cpp's quantizer falls back).</summary>
    static GgufTensorType Fitting(GgufTensorType type, long columns) =>
        columns % GgufTensorTypes.BlockSize(type) == 0 ? type : columns % 32 == 0 ? GgufTensorType.Q8_0 : GgufTensorType.F16;

    /// <summary>One tensor made, laid out as GGUF stores it, encoded and freed.</summary>
    static byte[] Encode(GgufTensorMapping mapping, Func<Tensor> make, GgufTensorType type)
    {
        using var scope = NewDisposeScope();
        var hf = make();
        if (!hf.shape.SequenceEqual(mapping.Shape))
            throw new InvalidOperationException($"{mapping.HfKey} has shape [{string.Join(", ", hf.shape)}], the config asks for [{string.Join(", ", mapping.Shape)}]");
        var tensor = mapping.ToFile(hf.detach().to(ScalarType.Float32)).contiguous();
        switch (type)
        {
            case GgufTensorType.F32: return tensor.bytes.ToArray();
            case GgufTensorType.F16:
                CheckHalfRange(mapping.HfKey, tensor);
                return tensor.to(ScalarType.Float16).bytes.ToArray();
            case GgufTensorType.BF16: return tensor.to(ScalarType.BFloat16).bytes.ToArray();
        }
        var values = MemoryMarshal.Cast<byte, float>(tensor.bytes);
        var blocks = new byte[values.Length / GgufTensorTypes.BlockSize(type) * GgufTensorTypes.BlockBytes(type)];
        QuantizedKernels.Quantize(type, values, blocks);
        return blocks;
    }

    static void CheckHalfRange(string key, Tensor tensor)
    {
        using var scope = NewDisposeScope();
        float largest = tensor.abs().max().item<float>();
        if (!(largest <= HalfMax))
            throw new ArgumentException($"{key} holds {largest}, beyond f16's range (±{HalfMax}); write the GGUF as bf16 or f32");
    }
}
