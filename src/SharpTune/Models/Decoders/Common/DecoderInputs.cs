using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Common;

/// <summary>What every decoder layer needs besides the hidden states, derived once per forward from the inputs.</summary>
/// <param name="PositionIds">(B, T) int64.</param>
/// <param name="Mask">(B, 1, T, P + T) additive mask (0 where attended, the dtype's minimum elsewhere), or null when
/// <paramref name="IsCausal"/> or a single new position makes it unnecessary.</param>
/// <param name="IsCausal">True when plain causal attention over the new positions alone is right (no cache, no
/// padding): scaled_dot_product_attention then takes its fast causal path.</param>
public sealed record DecoderInputs(Tensor PositionIds, Tensor? Mask, bool IsCausal)
{
    /// <summary>
    /// Positions and attention mask for <paramref name="inputIds"/> (B, T) after <paramref name="past"/> cached
    /// positions, as the <see cref="ICausalLanguageModel.Forward"/> contract describes. Created in the caller's
    /// dispose scope.
    /// </summary>
    public static DecoderInputs Prepare(Tensor inputIds, Tensor? attentionMask, Tensor? positionIds, long past, ScalarType dtype)
    {
        if (inputIds.dim() != 2) throw new ArgumentException($"input ids have shape [{string.Join(", ", inputIds.shape)}], expected (batch, length)");
        long batch = inputIds.shape[0], length = inputIds.shape[1], total = past + length;
        var device = inputIds.device;
        if (attentionMask is not null && (attentionMask.dim() != 2 || attentionMask.shape[0] != batch || attentionMask.shape[1] != total))
            throw new ArgumentException(
                $"attention mask has shape [{string.Join(", ", attentionMask.shape)}], expected [{batch}, {total}] (cached {past} + new {length} positions)");
        if (positionIds is not null && !positionIds.shape.SequenceEqual(inputIds.shape))
            throw new ArgumentException($"position ids have shape [{string.Join(", ", positionIds.shape)}], expected [{batch}, {length}]");

        bool padded = attentionMask is not null && attentionMask.eq(0).any().item<bool>();
        positionIds ??= attentionMask is not null
            // as transformers' generate: positions count real tokens, so a left-padded prompt starts at 0
            ? (attentionMask.to(ScalarType.Int64).cumsum(-1) - 1).masked_fill(attentionMask.eq(0), 1).narrow(1, past, length)
            : arange(past, total, dtype: ScalarType.Int64, device: device).unsqueeze(0).expand(batch, length);

        if (!padded && past == 0) return new DecoderInputs(positionIds, null, IsCausal: length > 1);
        if (!padded && length == 1) return new DecoderInputs(positionIds, null, IsCausal: false);

        var queries = arange(past, total, dtype: ScalarType.Int64, device: device).view(length, 1);
        var keys = arange(total, dtype: ScalarType.Int64, device: device).view(1, total);
        var allowed = keys.le(queries).unsqueeze(0);                                           // (1, T, S)
        if (attentionMask is not null) allowed = allowed.logical_and(attentionMask.ne(0).unsqueeze(1)); // (B, T, S)
        // The dtype's minimum rather than -inf, as HF: a query that sees only padding gets finite (unused) values, not NaN.
        var mask = zeros(allowed.shape, dtype, device).masked_fill(allowed.logical_not(), finfo(dtype).min);
        return new DecoderInputs(positionIds, mask.expand(batch, length, total).unsqueeze(1), IsCausal: false); // (B, 1, T, S)
    }
}
