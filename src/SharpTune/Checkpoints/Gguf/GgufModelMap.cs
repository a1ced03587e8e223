using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SharpTune.Checkpoints.Gguf;

/// <summary>How a GGUF tensor becomes its Hugging Face counterpart.</summary>
public enum GgufTensorTransform
{
    /// <summary>Same layout.</summary>
    None,
    /// <summary>HF GPT-2 Conv1D stores [in, out]; GGUF stores the Linear layout [out, in].</summary>
    Transpose,
    /// <summary>Llama q/k rows: undo llama.cpp's pair permutation (<see cref="GgufPermutation.FromLlamaCpp"/>).</summary>
    UnpermuteRows,
}

/// <summary>One Hugging Face key, the GGUF tensor it comes from, and its expected Hugging Face shape.</summary>
public sealed record GgufTensorMapping(string HfKey, string GgufName, long[] Shape, GgufTensorTransform Transform = GgufTensorTransform.None, int Heads = 0)
{
    /// <summary>The shape the GGUF tensor must have (PyTorch order): <see cref="Shape"/> before the transform.</summary>
    public long[] FileShape => Transform == GgufTensorTransform.Transpose ? [Shape[1], Shape[0]] : Shape;
}

/// <summary>
/// The llama.cpp-style per-architecture table in one place (as llama-arch.cpp / llama-model-loader):
/// from a GGUF file of a supported architecture, a Hugging Face <c>config.json</c> equivalent and the
/// tensors under their Hugging Face keys and layout. Every tensor's presence, shape and type is
/// checked against the config when the map is created, before any data is read.
/// </summary>
public sealed class GgufModelMap
{
    public static IReadOnlyList<string> SupportedArchitectures { get; } = ["llama", "qwen2", "gpt2"];

    readonly JsonObject config;

    public GgufFile File { get; }
    /// <summary><c>general.architecture</c>.</summary>
    public string Architecture { get; }
    /// <summary>Every Hugging Face key in state-dict order.</summary>
    public IReadOnlyList<GgufTensorMapping> Tensors { get; }
    /// <summary>Tokenizer metadata, or null when the file has none.</summary>
    public GgufTokenizerData? Tokenizer { get; }
    /// <summary>
    /// For Llama 3 rope scaling llama.cpp's converter stores no <c>rope.scaling.*</c> keys but a
    /// <c>rope_freqs.weight</c> tensor of head_dim/2 factors (inv_freq[i] / factor[i] gives the scaled
    /// frequencies). Its name when the file has it, else null; <see cref="Config"/> then has no rope_scaling.
    /// </summary>
    public string? RopeFrequencyFactors { get; }

    /// <summary>A fresh copy of the Hugging Face config each call (callers may edit it).</summary>
    public JsonObject Config => (JsonObject)config.DeepClone();

    GgufModelMap(GgufFile file, string architecture, JsonObject config, List<GgufTensorMapping> tensors)
    {
        (File, Architecture, this.config, Tensors) = (file, architecture, config, tensors);
        Tokenizer = GgufTokenizerData.From(file);
        RopeFrequencyFactors = file.HasTensor("rope_freqs.weight") ? "rope_freqs.weight" : null;
    }

    /// <summary>Opens and maps the GGUF file at <paramref name="path"/>.</summary>
    public static GgufModelMap Open(string path) => Create(GgufFile.Open(path));

    /// <summary>Maps <paramref name="file"/>; errors name unsupported architectures, missing or wrongly shaped tensors.</summary>
    public static GgufModelMap Create(GgufFile file)
    {
        string arch = file.GetString("general.architecture");
        var (config, tensors) = arch switch
        {
            "llama" or "qwen2" => GgufArchitectures.Llama(file, arch),
            "gpt2" => GgufArchitectures.Gpt2(file),
            _ => throw new NotSupportedException(
                $"{file.Path}: architecture '{arch}' is not supported; supported: {string.Join(", ", SupportedArchitectures)}"),
        };
        foreach (var m in tensors) Check(file, m);
        return new GgufModelMap(file, arch, config, tensors);
    }

    static void Check(GgufFile file, GgufTensorMapping m)
    {
        if (!file.TryGetTensor(m.GgufName, out var info))
            throw new InvalidDataException($"{file.Path}: tensor '{m.GgufName}' (for {m.HfKey}) is missing; expected shape [{string.Join(", ", m.FileShape)}]");
        if (!info.Shape.SequenceEqual(m.FileShape))
            throw new InvalidDataException(
                $"{file.Path}: tensor '{m.GgufName}' has shape {info.ShapeText}, expected [{string.Join(", ", m.FileShape)}] from the config (for {m.HfKey})");
        if (!GgufTensorTypes.IsSupported(info.Type))
            throw new NotSupportedException(
                $"{file.Path}: tensor '{m.GgufName}' is {info.Type}; {info.Type} is not supported; supported: {GgufTensorTypes.SupportedList}");
    }

    /// <summary>Reads one mapped tensor in Hugging Face layout.</summary>
    public Tensor ReadTensor(GgufTensorMapping mapping, ScalarType dtype = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        var t = File.ReadTensor(mapping.GgufName, ScalarType.Float32);
        t = mapping.Transform switch
        {
            GgufTensorTransform.Transpose => t.t(),
            GgufTensorTransform.UnpermuteRows => GgufPermutation.FromLlamaCpp(t, mapping.Heads),
            _ => t,
        };
        return t.to(dtype).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Every mapped tensor under its Hugging Face key, read only when asked, straight into the caller's tensor. Tensors
    /// whose layout changes (GPT-2's transposed matrices, llama's permuted q/k rows: one layer's matrix each) are read
    /// whole in float32, rearranged and copied; the rest stream from the file chunk by chunk.
    /// </summary>
    public IEnumerable<ICheckpointTensor> CheckpointTensors() => Tensors.Select(m => (ICheckpointTensor)new MappedTensor(this, m));

    sealed class MappedTensor(GgufModelMap map, GgufTensorMapping mapping) : ICheckpointTensor
    {
        public string Name => mapping.HfKey;
        public long[] Shape => mapping.Shape;
        public bool IsFloatingPoint => true;

        public void ReadInto(Tensor destination)
        {
            if (mapping.Transform == GgufTensorTransform.None)
            {
                map.File.ReadInto(mapping.GgufName, destination);
                return;
            }
            using var value = map.ReadTensor(mapping);
            using var _ = no_grad();
            destination.copy_(value);
        }
    }

    /// <summary>Lazily reads every tensor under its Hugging Face key; each is read when the enumeration reaches it.</summary>
    public IEnumerable<(string Key, Tensor Tensor)> ReadTensors(ScalarType dtype = ScalarType.Float32)
    {
        foreach (var m in Tensors) yield return (m.HfKey, ReadTensor(m, dtype));
    }
}
