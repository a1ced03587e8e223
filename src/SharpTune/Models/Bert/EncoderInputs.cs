using SharpTune.Models.Bert;
using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>
/// What the encoder is fed after a prompt method has had its say. Input-side prompts (prompt tuning,
/// P-tuning) put <see cref="VirtualTokens"/> vectors in front of the word embeddings; prefix methods add
/// per-layer key/value prefixes and leave the positions of the real tokens alone (VirtualTokens 0).
/// </summary>
/// <param name="InputIds">(B, T), or null when <paramref name="InputsEmbeds"/> is given.</param>
/// <param name="InputsEmbeds">(B, P+T, H) with the prompts in front.</param>
/// <param name="AttentionMask">(B, P+T) for input-side prompts, else (B, T).</param>
/// <param name="TokenTypeIds">Same length as the mask: P zeros in front for input-side prompts.</param>
/// <param name="Prefixes">Per-layer key/value prefixes, each (B, N, P, D).</param>
/// <param name="VirtualTokens">Positions in front of the real [CLS]; the head reads and strips from there.</param>
public sealed record EncoderInputs(
    Tensor? InputIds, Tensor? InputsEmbeds, Tensor AttentionMask, Tensor TokenTypeIds,
    IReadOnlyList<KeyValuePrefix>? Prefixes, int VirtualTokens);

/// <summary>A prompt method: a module that turns the batch into what the encoder sees.</summary>
public interface IEncoderInputAdapter
{
    EncoderInputs Prepare(BertModel encoder, Tensor inputIds, Tensor attentionMask, Tensor tokenTypeIds);
}
