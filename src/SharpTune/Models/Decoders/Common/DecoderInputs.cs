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
    /// Positions and attention mask for <paramref name="inputs"/> (B, T) after <paramref name="past"/> cached
    /// positions, as the <see cref="ICausalLanguageModel.Forward"/> contract describes. Created in the caller's
    /// dispose scope.
    /// </summary>
    /// <param name="inputs">The ids (B, T) or the input embeddings (B, T, H) of this forward: only their batch and length are read.</param>
    public static DecoderInputs Prepare(Tensor inputs, Tensor? attentionMask, Tensor? positionIds, long past, ScalarType dtype)
    {
        if (inputs.dim() is not (2 or 3)) throw new ArgumentException($"inputs have shape [{string.Join(", ", inputs.shape)}], expected (batch, length) ids or (batch, length, hidden) embeddings");
        long batch = inputs.shape[0], length = inputs.shape[1], total = past + length;
        var device = inputs.device;
        if (attentionMask is { } m3 && m3.dim() == 3)
        {
            // A packed batch: (B, T, S) says which keys each query may see (examples kept apart); causality still applies.
            if (m3.shape[0] != batch || m3.shape[1] != length || m3.shape[2] != total)
                throw new ArgumentException($"attention mask has shape [{string.Join(", ", m3.shape)}], expected [{batch}, {length}, {total}]");
            if (positionIds is null) throw new ArgumentException("a (batch, length, length) attention mask needs position ids (they restart with each packed example)");
            var q = arange(past, total, dtype: ScalarType.Int64, device: device).view(1, length, 1);
            var k = arange(total, dtype: ScalarType.Int64, device: device).view(1, 1, total);
            var sees = k.le(q).logical_and(m3.ne(0));                                           // (B, T, S)
            var blocked = zeros(sees.shape, dtype, device).masked_fill(sees.logical_not(), finfo(dtype).min);
            return new DecoderInputs(positionIds, blocked.unsqueeze(1), IsCausal: false);        // (B, 1, T, S)
        }
        if (attentionMask is not null && (attentionMask.dim() != 2 || attentionMask.shape[0] != batch || attentionMask.shape[1] != total))
            throw new ArgumentException(
                $"attention mask has shape [{string.Join(", ", attentionMask.shape)}], expected [{batch}, {total}] (cached {past} + new {length} positions)");
        if (positionIds is not null && (positionIds.dim() != 2 || positionIds.shape[0] != batch || positionIds.shape[1] != length))
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
