using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders;

/// <summary>
/// The two halves of <see cref="ICausalLanguageModel.ForwardEmbeddings"/> apart, so that training can compute the head
/// and the loss in chunks of tokens (<see cref="CausalLmLoss"/>) instead of materialising (B, T, V) logits:
/// <c>ForwardEmbeddings(e, ...) == linear(ForwardHidden(e, ...), HeadWeight, HeadBias).to(float32)</c>.
/// </summary>
public interface ILanguageModelHead
{
    /// <summary>
    /// The final hidden states (B, T, H) after the last norm, in the model's compute dtype (bf16 for a bf16 model), for
    /// input embeddings (B, T, H) (<see cref="ICausalLanguageModel.EmbedTokens"/>, with a prompt method's virtual tokens
    /// in front or not); the arguments and the cache behave as in <see cref="ICausalLanguageModel.ForwardEmbeddings"/>.
    /// </summary>
    Tensor ForwardHidden(Tensor inputsEmbeds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null);

    /// <summary>The output projection (V, H): <c>lm_head.weight</c>, or the token embedding matrix when the head is tied.</summary>
    Tensor HeadWeight { get; }

    /// <summary>The output projection's bias (V), or null (none of the built-in families has one).</summary>
    Tensor? HeadBias { get; }

    /// <summary>
    /// The output projection (V, H) kept in its file's blocks (<c>--dtype stored</c>), in place of <see cref="HeadWeight"/>,
    /// which then throws; null for a dense head.
    /// </summary>
    QuantizedMatrix? StoredHead => null;

    /// <summary>Float32 logits (..., V) of final hidden states (..., H): the head as <see cref="ICausalLanguageModel.ForwardEmbeddings"/> applies it.</summary>
    Tensor Logits(Tensor hidden);
}
