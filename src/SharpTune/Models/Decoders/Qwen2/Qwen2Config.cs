using System.Text.Json.Serialization;
using SharpTune.Models.Decoders.Llama;

namespace SharpTune.Models.Decoders.Qwen2;

/// <summary>
/// The configuration of a Qwen2 decoder (HF <c>Qwen2Config</c>, also Qwen2.5): Llama's layout with biases on the
/// query, key and value projections (none on the output projection). The sliding-window fields are read and written
/// back; a model that turns the window on (<c>use_sliding_window</c>) is refused, since full attention would differ
/// from it beyond the window. Defaults are transformers'.
/// </summary>
public sealed record Qwen2Config : LlamaConfig
{
    public Qwen2Config()
    {
        ModelType = "qwen2";
        VocabSize = 151936;
        IntermediateSize = 22016;
        MaxPositionEmbeddings = 32768;
    }

    [JsonPropertyName("use_sliding_window")] public bool UseSlidingWindow { get; init; }
    [JsonPropertyName("sliding_window")] public int? SlidingWindow { get; init; } = 4096;
    [JsonPropertyName("max_window_layers")] public int? MaxWindowLayers { get; init; } = 28;

    [JsonIgnore] public override bool QkvBias => true;
    [JsonIgnore] public override bool OutputBias => false;

    public override void Validate(string source)
    {
        base.Validate(source);
        if (UseSlidingWindow)
            throw new InvalidDataException($"{source}: use_sliding_window true is not supported (sliding-window attention); only full attention");
    }
}
