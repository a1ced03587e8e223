using System.Text.Json;
using System.Text.Json.Serialization;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// The <c>rope_scaling</c> object of a Hugging Face config; the kinds it may name are registered in
/// <see cref="RopeScalingKinds"/> (default, linear, llama3). Older configs
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

    /// <summary>Throws naming the field (under <paramref name="field"/>) that is missing or out of range, or a kind not registered.</summary>
    public void Validate(string source, string field = "rope_scaling")
    {
        if (RopeTheta is { } theta) DecoderConfigJson.Positive(source, $"{field}.rope_theta", theta);
        RopeScalingKinds.Get(Kind, source, field).Validate(this, source, field);
    }

    /// <summary>The value of a setting this kind requires; missing or not positive is an error naming <paramref name="field"/>.<paramref name="name"/>.</summary>
    public double Required(double? value, string name, string source, string field)
    {
        if (value is not { } v) throw new InvalidDataException($"{source}: {field}.{name} is required for rope_type '{Kind}'");
        DecoderConfigJson.Positive(source, $"{field}.{name}", v);
        return v;
    }

    /// <summary>
    /// The Llama 3 scaling that gives llama.cpp's <c>rope_freqs.weight</c>: llama.cpp's converter writes Llama 3.1+
    /// <c>rope_scaling</c> not as settings but as one factor per frequency (head_dim / 2 of them; the scaled inverse
    /// frequencies are inv_freq[i] / factors[i], as ggml's rope applies them). The factors are 1 on the high
    /// frequencies, <c>factor</c> on the low ones and blend in between; the blend fixes the two band edges (as
    /// wavelengths original_max / high_freq_factor and original_max / low_freq_factor), so the settings follow for
    /// <paramref name="originalContext"/>, which only scales all three. Returns null, with the reason, when no llama3
    /// scaling reproduces the factors within float32 rounding, or when fewer than two factors lie in the blend.
    /// </summary>
    public static (RopeScaling? Scaling, string Reason) FromFrequencyFactors(IReadOnlyList<float> factors, int headDim, double theta, int originalContext = 8192)
    {
        if (factors.Count != headDim / 2) return (null, $"{factors.Count} factors for a head dimension of {headDim} (expected {headDim / 2})");
        if (factors.Any(f => !(f > 0) || !float.IsFinite(f))) return (null, "a factor is not a positive number");
        double factor = factors.Max();
        const double tolerance = 1e-5;
        bool Near(double a, double b) => Math.Abs(a - b) <= tolerance * Math.Max(1, Math.Abs(b));
        if (Near(factor, 1)) return (null, "every factor is 1 (no scaling)");
        var wavelengths = Enumerable.Range(0, headDim / 2).Select(i => 2 * Math.PI * Math.Pow(theta, 2.0 * i / headDim)).ToArray();
        var blend = Enumerable.Range(0, factors.Count).Where(i => !Near(factors[i], 1) && !Near(factors[i], factor)).ToList();
        if (blend.Count < 2) return (null, $"{blend.Count} factor(s) between 1 and {factor}: the band edges are not determined");

        // smooth s = (1/f - 1/factor) / (1 - 1/factor) is linear in 1/wavelength: 0 at the low band's edge, 1 at the high band's.
        double Smooth(int i) => (1 / (double)factors[i] - 1 / factor) / (1 - 1 / factor);
        int a = blend[0], b = blend[^1];
        double slope = (Smooth(b) - Smooth(a)) / (1 / wavelengths[b] - 1 / wavelengths[a]);
        double lowEdge = 1 / (1 / wavelengths[a] - Smooth(a) / slope);          // wavelength where s = 0
        double highEdge = 1 / (1 / lowEdge + 1 / slope);                         // wavelength where s = 1
        if (!(highEdge > 0 && lowEdge > highEdge) || !double.IsFinite(lowEdge))
            return (null, "the factors do not blend from 1 to the largest one as the wavelength grows");

        var expected = RotaryEmbedding.InverseFrequencies(headDim, theta, null).Select((f, i) => f / factors[i]).ToArray();
        (RopeScaling Scaling, int Worst, double Error) Try(Func<double, double> round)
        {
            var scaling = new RopeScaling
            {
                RopeType = "llama3", Factor = round(factor), OriginalMaxPositionEmbeddings = originalContext,
                LowFreqFactor = round(originalContext / lowEdge), HighFreqFactor = round(originalContext / highEdge),
            };
            var actual = RotaryEmbedding.InverseFrequencies(headDim, theta, scaling);
            int worst = Enumerable.Range(0, expected.Length).MaxBy(i => Math.Abs(actual[i] / expected[i] - 1));
            return (scaling, worst, Math.Abs(actual[worst] / expected[worst] - 1));
        }
        // Six significant digits where they are as good (float32 factors give 4.0000012 where the config said 4).
        var rounded = Try(Round);
        var exact = rounded.Error <= tolerance ? rounded : Try(v => v);
        return exact.Error <= tolerance ? (exact.Scaling, "")
            : (null, $"no llama3 scaling reproduces them (frequency {exact.Worst} off by {exact.Error:G3} relative with factor {factor:G6}, " +
                     $"low_freq_factor {exact.Scaling.LowFreqFactor:G6}, high_freq_factor {exact.Scaling.HighFreqFactor:G6})");
    }

    static double Round(double value) => double.Parse(value.ToString("G6", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture);
}
