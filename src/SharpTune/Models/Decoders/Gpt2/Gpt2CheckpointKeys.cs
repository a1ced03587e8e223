namespace SharpTune.Models.Decoders.Gpt2;

/// <summary>How GPT-2 checkpoint keys map onto <see cref="GPT2LMHeadModel"/>'s keys.</summary>
public static class Gpt2CheckpointKeys
{
    /// <summary>
    /// The model's key for checkpoint key <paramref name="key"/>, or null for tensors that are not weights. Files saved
    /// from <c>GPT2Model</c> (as OpenAI's <c>gpt2</c> on the Hub) lack the <c>transformer.</c> prefix, which is added; the
    /// causal-mask buffers <c>attn.bias</c> and <c>attn.masked_bias</c> of older files, and <c>lm_head.weight</c> when
    /// the head is tied, are skipped.
    /// </summary>
    public static string? Map(string key, Gpt2Config config)
    {
        if (key.EndsWith(".attn.bias", StringComparison.Ordinal) || key.EndsWith(".attn.masked_bias", StringComparison.Ordinal)) return null;
        if (key == "lm_head.weight") return config.TieWordEmbeddings ? null : key;
        return key.StartsWith("transformer.", StringComparison.Ordinal) ? key : "transformer." + key;
    }
}
