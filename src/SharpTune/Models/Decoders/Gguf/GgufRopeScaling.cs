using System.Text.Json.Nodes;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Common;

namespace SharpTune.Models.Decoders.Gguf;

/// <summary>Rope scaling in GGUF, both ways, for every kind as <see cref="RopeScalingKinds"/> says GGUF carries it.</summary>
public static class GgufRopeScaling
{
    /// <summary>
    /// The Hugging Face <c>rope_scaling</c> of <c>{arch}.rope.scaling.*</c> keys, or null when the file has none. Kinds
    /// carried as <c>rope_freqs.weight</c> (llama3) are read from that tensor when the model is loaded.
    /// </summary>
    public static JsonObject? Read(GgufFile f, string arch)
    {
        string key = $"{arch}.rope.scaling.type";
        if (!f.TryGetString(key, out string type) || type == "none") return null;
        var byKeys = RopeScalingKinds.All.Where(k => k.Gguf == GgufRopeForm.ScalingKeys).Select(k => k.Name).ToList();
        if (!byKeys.Contains(type))
            throw new InvalidDataException($"{f.Path}: metadata '{key}' = '{type}' is not supported (none, {string.Join(", ", byKeys)})");
        var scaling = new JsonObject { ["rope_type"] = type, ["type"] = type };
        if (f.TryGetFloat($"{arch}.rope.scaling.factor", out double factor)) scaling["factor"] = factor;
        if (f.TryGetInt($"{arch}.rope.scaling.original_context_length", out long original))
            scaling["original_max_position_embeddings"] = original;
        return scaling;
    }

    /// <summary>The keys to write for <paramref name="scaling"/>.</summary>
    public static IEnumerable<KeyValuePair<string, object>> Keys(RopeScaling? scaling, string arch)
    {
        if (scaling is null || RopeScalingKinds.Get(scaling.Kind).Gguf != GgufRopeForm.ScalingKeys) yield break;
        yield return new($"{arch}.rope.scaling.type", scaling.Kind);
        yield return new($"{arch}.rope.scaling.factor", (float)scaling.Factor!.Value);
    }

    /// <summary>
    /// The <c>rope_freqs.weight</c> to write for <paramref name="scaling"/>, as the converter does for Llama 3: one factor per
    /// frequency, unscaled / scaled (llama.cpp divides by it); none for other kinds.
    /// </summary>
    public static IReadOnlyList<(string Name, float[] Values)> Tensors(RopeScaling? scaling, int headDim, double theta)
    {
        if (scaling is null || RopeScalingKinds.Get(scaling.Kind).Gguf != GgufRopeForm.FrequencyFactors) return [];
        var unscaled = RotaryEmbedding.InverseFrequencies(headDim, theta, null);
        var scaled = RotaryEmbedding.InverseFrequencies(headDim, theta, scaling);
        return [("rope_freqs.weight", unscaled.Zip(scaled, (u, s) => (float)(u / s)).ToArray())];
    }
}
