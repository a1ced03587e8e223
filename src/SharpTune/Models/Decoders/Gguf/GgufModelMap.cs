using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Gguf;

/// <summary>
/// A GGUF model file read through its family's table (as llama-model-loader): the family registered for
/// <c>general.architecture</c> gives a Hugging Face <c>config.json</c> equivalent of the metadata and, from that config
/// parsed, the tensors under their Hugging Face keys and layout. Every tensor's presence, shape and type is checked
/// against the config when the map is created, before any data is read.
/// </summary>
public sealed class GgufModelMap
{
    /// <summary>The <c>general.architecture</c> values of the registered families.</summary>
    public static IReadOnlyList<string> SupportedArchitectures => DecoderFamilies.All.SelectMany(f => f.GgufArchitectures).ToList();

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
        var family = DecoderFamilies.All.FirstOrDefault(f => f.GgufArchitectures.Contains(arch))
            ?? throw new NotSupportedException(
                $"{file.Path}: architecture '{arch}' is not supported; supported: {string.Join(", ", SupportedArchitectures)}");
        var config = family.Gguf.ReadConfig(file);
        // The sizes the table needs are checked as the keys are read; the rest of the config when the model is built.
        var tensors = family.Gguf.Tensors(family.ParseConfig(config, file.Path, validate: false)).ToList();
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
        var t = mapping.FromFile(File.ReadTensor(mapping.GgufName, ScalarType.Float32));
        return t.to(dtype).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Every mapped tensor under its Hugging Face key, read only when asked, straight into the caller's tensor. Tensors
    /// whose layout changes (GPT-2's transposed matrices, llama's permuted q/k rows, Gemma's norms: one layer's tensor
    /// each) are read whole in float32, transformed and copied; the rest stream from the file chunk by chunk.
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
