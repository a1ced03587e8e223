using System.Text.Json;
using System.Text.Json.Serialization;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// The <c>rope_scaling</c> object of a Hugging Face config. Supported: none (<c>default</c>), <c>linear</c>
/// (positions divided by <c>factor</c>) and <c>llama3</c> (Llama 3.1's frequency-dependent scaling). Older configs
/// name the kind <c>type</c>, newer ones <c>rope_type</c>. Transformers 5 writes the same fields, with
/// <c>rope_theta</c>, as <c>rope_parameters</c>.
/// </summary>
public sealed record RopeScaling
{
    [JsonPropertyName("rope_type")] public string? RopeType { get; init; }
    [JsonPropertyName("type")] public string? Type { get; init; }
    [JsonPropertyName("factor")] public double? Factor { get; init; }
    [JsonPropertyName("low_freq_factor")] public double? LowFreqFactor { get; init; }
    [JsonPropertyName("high_freq_factor")] public double? HighFreqFactor { get; init; }
    [JsonPropertyName("original_max_position_embeddings")] public int? OriginalMaxPositionEmbeddings { get; init; }
    /// <summary>The rotary base, where the object is transformers 5's <c>rope_parameters</c>.</summary>
    [JsonPropertyName("rope_theta")] public double? RopeTheta { get; init; }

    /// <summary>Fields this record does not model; written back unchanged.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; init; }

    /// <summary>The kind of scaling: <c>rope_type</c>, else <c>type</c>, else <c>default</c>.</summary>
    [JsonIgnore] public string Kind => RopeType ?? Type ?? "default";

    /// <summary>Throws naming the field (under <paramref name="field"/>) that is missing or out of range.</summary>
    public void Validate(string source, string field = "rope_scaling")
    {
        if (RopeTheta is { } theta) DecoderConfigJson.Positive(source, $"{field}.rope_theta", theta);
        double Required(double? value, string name)
        {
            if (value is not { } v) throw new InvalidDataException($"{source}: {field}.{name} is required for rope_type '{Kind}'");
            DecoderConfigJson.Positive(source, $"{field}.{name}", v);
            return v;
        }
        switch (Kind)
        {
            case "default":
                return;
            case "linear":
                Required(Factor, "factor");
                return;
            case "llama3":
                Required(Factor, "factor");
                double low = Required(LowFreqFactor, "low_freq_factor"), high = Required(HighFreqFactor, "high_freq_factor");
                Required(OriginalMaxPositionEmbeddings, "original_max_position_embeddings");
                if (!(high > low))
                    throw new InvalidDataException($"{source}: {field}.high_freq_factor ({high}) must exceed {field}.low_freq_factor ({low})");
                return;
            default:
                throw new InvalidDataException($"{source}: {field}.rope_type '{Kind}' is not supported (default, linear, llama3)");
        }
    }
}
