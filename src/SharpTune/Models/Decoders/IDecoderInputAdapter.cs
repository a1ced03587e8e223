using static TorchSharp.torch;

namespace SharpTune.Models.Decoders;

/// <summary>What a prompt method puts in front of a decoder's input (see <see cref="IDecoderInputAdapter"/>).</summary>
public enum DecoderPromptKind
{
    /// <summary>Prompt tuning and P-tuning: P embeddings in front of the token embeddings; they take positions 0..P-1.</summary>
    InputEmbeddings,

    /// <summary>Prefix tuning and P-tuning v2: per layer, P keys and values in front of the cache; real tokens start at position P.</summary>
    KeyValuePrefix,
}

/// <summary>
/// A prompt method's module seen from a decoder (PEFT's CAUSAL_LM prompt learning): it yields either the P virtual
/// tokens' embeddings or each layer's key/value prefix. The virtual positions always get attention-mask 1 and no loss.
/// </summary>
public interface IDecoderInputAdapter
{
    DecoderPromptKind Kind { get; }

    /// <summary>P, the number of virtual tokens.</summary>
    int VirtualTokens { get; }

    /// <summary>(B, P, H) embeddings for <see cref="DecoderPromptKind.InputEmbeddings"/>, in <paramref name="dtype"/>.</summary>
    Tensor PromptEmbeddings(long batch, ScalarType dtype);

    /// <summary>
    /// For <see cref="DecoderPromptKind.KeyValuePrefix"/>: appends each layer's (B, KV heads, P, D) keys and values to the
    /// empty <paramref name="cache"/>, in <paramref name="dtype"/>.
    /// </summary>
    void FillPrefix(KeyValueCache cache, long batch, ScalarType dtype);
}
