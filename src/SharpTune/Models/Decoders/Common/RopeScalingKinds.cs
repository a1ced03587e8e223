namespace SharpTune.Models.Decoders.Common;

/// <summary>How llama.cpp's GGUF carries a rope scaling kind.</summary>
public enum GgufRopeForm
{
    /// <summary>Nothing is written (no scaling).</summary>
    None,
    /// <summary><c>{arch}.rope.scaling.type</c> = the kind's name and <c>{arch}.rope.scaling.factor</c>.</summary>
    ScalingKeys,
    /// <summary>No keys but a <c>rope_freqs.weight</c> tensor of head_dim / 2 factors (inv_freq / factor), as the converter writes Llama 3.</summary>
    FrequencyFactors,
}

/// <summary>
/// One kind of rotary scaling (<c>rope_scaling.rope_type</c>): the settings it requires, how it rescales the inverse
/// frequencies, and how GGUF carries it.
/// </summary>
/// <param name="Validate">Throws naming the first setting (under source and field) missing or out of range.</param>
/// <param name="Scale">The scaled inverse frequencies from the unscaled ones (θ^(-2i/D), i &lt; D/2).</param>
public sealed record RopeScalingKind(string Name, Action<RopeScaling, string, string> Validate, Func<double[], RopeScaling, double[]> Scale, GgufRopeForm Gguf);

/// <summary>
/// The rope scaling kinds, registered once: config validation, <see cref="RotaryEmbedding"/> and the GGUF reader and
/// writer all ask here, so a new kind (yarn, longrope) is one registration. Each keeps the attention scaling at 1.
/// </summary>
public static class RopeScalingKinds
{
    static readonly List<RopeScalingKind> Kinds = [];

    static RopeScalingKinds()
    {
        Register(new("default", (_, _, _) => { }, (f, _) => f, GgufRopeForm.None));
        Register(new("linear", (s, source, field) => s.Required(s.Factor, "factor", source, field),
            (f, s) => f.Select(x => x / s.Factor!.Value).ToArray(), GgufRopeForm.ScalingKeys));
        Register(new("llama3", ValidateLlama3, Llama3, GgufRopeForm.FrequencyFactors));
    }

    public static IReadOnlyList<RopeScalingKind> All => Kinds;

    /// <summary>Adds a kind; a name already taken is refused.</summary>
    public static void Register(RopeScalingKind kind)
    {
        lock (Kinds)
        {
            if (Kinds.Any(k => k.Name == kind.Name)) throw new InvalidOperationException($"rope scaling kind '{kind.Name}' is already registered");
            Kinds.Add(kind);
        }
    }

    /// <summary>The kind named <paramref name="name"/>; an unknown one is an error naming <paramref name="field"/> and the supported kinds.</summary>
    public static RopeScalingKind Get(string name, string source = "config", string field = "rope_scaling") =>
        Kinds.FirstOrDefault(k => k.Name == name)
        ?? throw new InvalidDataException($"{source}: {field}.rope_type '{name}' is not supported ({string.Join(", ", Kinds.Select(k => k.Name))})");

    static void ValidateLlama3(RopeScaling s, string source, string field)
    {
        s.Required(s.Factor, "factor", source, field);
        double low = s.Required(s.LowFreqFactor, "low_freq_factor", source, field), high = s.Required(s.HighFreqFactor, "high_freq_factor", source, field);
        s.Required(s.OriginalMaxPositionEmbeddings, "original_max_position_embeddings", source, field);
        if (!(high > low))
            throw new InvalidDataException($"{source}: {field}.high_freq_factor ({high}) must exceed {field}.low_freq_factor ({low})");
    }

    /// <summary>
    /// Llama 3.1's scaling, as HF's <c>_compute_llama3_parameters</c>: the low frequencies (wavelength above original_max /
    /// low_freq_factor) divided by the factor, the high ones (wavelength below original_max / high_freq_factor) kept, a blend in between.
    /// </summary>
    static double[] Llama3(double[] frequencies, RopeScaling scaling)
    {
        double factor = scaling.Factor!.Value, low = scaling.LowFreqFactor!.Value, high = scaling.HighFreqFactor!.Value;
        double original = scaling.OriginalMaxPositionEmbeddings!.Value;
        double lowFrequencyWavelength = original / low, highFrequencyWavelength = original / high;
        return frequencies.Select(f =>
        {
            double wavelength = 2 * Math.PI / f;
            if (wavelength < highFrequencyWavelength) return f;
            if (wavelength > lowFrequencyWavelength) return f / factor;
            double smooth = (original / wavelength - low) / (high - low);
            return (1 - smooth) * f / factor + smooth * f;
        }).ToArray();
    }
}
