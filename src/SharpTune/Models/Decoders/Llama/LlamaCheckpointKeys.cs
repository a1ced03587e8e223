using SharpTune.Models.Decoders.Common;

namespace SharpTune.Models.Decoders.Llama;

/// <summary>How Llama-layout checkpoint keys (Llama, Mistral, Qwen2) map onto <see cref="LlamaForCausalLM"/>'s keys.</summary>
public static class LlamaCheckpointKeys
{
    /// <summary>
    /// The model's key for checkpoint key <paramref name="key"/>, or null for tensors HF does not load either: the
    /// rotary <c>inv_freq</c> buffers older checkpoints saved, and <c>lm_head.weight</c> when the head is tied.
    /// </summary>
    public static string? Map(string key, LlamaConfig config)
    {
        if (key.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)) return null;
        if (key == "lm_head.weight" && config.TieWordEmbeddings) return null;
        return key;
    }
}
