using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Models.Quantized;

/// <summary>
/// Rounds activations as the block kernels do before their products with a weight type, which is ggml's rounding for
/// the quantized types (its <c>vec_dot_type</c>): Q8_0 blocks of 32 (scale max|x|/127 stored in fp16) for Q4_0, Q4_1,
/// Q5_0, Q5_1 and Q8_0 weights; Q8_K blocks of 256 (scale max/-127 in fp32) for the K-quants. Float weights (F32, F16,
/// BF16) meet fp32 activations in the kernels, so nothing is rounded for them (ggml rounds to fp16/bf16 there: a
/// difference of half an fp16 ulp). The dequantized-tile path applies the same rounding (values, not integers), so a
/// prompt and the tokens generated after it see one model.
/// </summary>
public static class ActivationRounding
{
    /// <summary>The rounded rows (..., in) in float32; <paramref name="x"/> is left as it is.</summary>
    public static Tensor Apply(Tensor x, GgufTensorType weightType)
    {
        using var scope = NewDisposeScope();
        var rows = x.to(ScalarType.Float32);
        var rounded = weightType switch
        {
            // The block kernels multiply float weights by fp32 activations (FMA), so the tile path does too.
            GgufTensorType.F32 or GgufTensorType.F16 or GgufTensorType.BF16 => rows.clone(),
            GgufTensorType.Q4_0 or GgufTensorType.Q4_1 or GgufTensorType.Q5_0 or GgufTensorType.Q5_1 or GgufTensorType.Q8_0 => Q8_0(rows),
            GgufTensorType.Q4_K or GgufTensorType.Q5_K or GgufTensorType.Q6_K => Q8_K(rows),
            _ => throw new NotSupportedException($"no activation rounding is known for {weightType} weights"),
        };
        return rounded.MoveToOuterDisposeScope();
    }

    // ggml's x86 quantize_row_q8_0: q = round-to-even(x · 127/max|x|), d = max|x|/127 kept in fp16, so the product
    // sees q·fp16(d). (127/max, not 1/d: the two differ in the last bit, enough to flip a tie now and then.)
    static Tensor Q8_0(Tensor rows)
    {
        var blocks = rows.reshape(-1, 32);                                                     // (N·in/32, 32)
        var amax = blocks.abs().amax([1L], keepdim: true);                                     // (·, 1)
        var d = amax / 127f;
        var inverse = where(amax.eq(0), zeros_like(amax), full_like(amax, 127f) / amax);   // a true division, as ggml's 127.f/amax
        var q = (blocks * inverse).round();
        return (q * d.to(ScalarType.Float16).to(ScalarType.Float32)).reshape(rows.shape);
    }

    // quantize_row_q8_K: the element of largest magnitude (with its sign) gives iscale = -127/max, q = round(iscale·x)
    // clamped to 127, d = 1/iscale in fp32; the product sees q·d.
    static Tensor Q8_K(Tensor rows)
    {
        var blocks = rows.reshape(-1, 256);                                                    // (N·in/256, 256)
        var at = blocks.abs().argmax(1, keepdim: true);
        var max = blocks.gather(1, at);                                                        // signed, (·, 1)
        var iscale = where(max.eq(0), zeros_like(max), full_like(max, -127f) / max);   // a true division (scalar / tensor is a reciprocal, an ulp off)
        var q = (blocks * iscale).round().clamp_max(127);
        var d = where(iscale.eq(0), zeros_like(iscale), ones_like(iscale) / iscale);
        return (q * d).reshape(rows.shape);
    }
}
