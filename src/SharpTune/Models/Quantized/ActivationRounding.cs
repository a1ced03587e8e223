using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Models.Quantized;

/// <summary>
/// Rounds activations the way ggml does before its products with a weight type (the weight type's <c>vec_dot_type</c>):
/// to Q8_0 blocks of 32 (scale max|x|/127 stored in fp16) for Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weights; to Q8_K blocks of
/// 256 (scale max/-127 in fp32) for the K-quants; to fp16 or bf16 for those weights; not at all for fp32. The block
/// kernels compute on such rounded rows; the dequantized-tile path applies the same rounding (values, not integers), so
/// a prompt and the tokens generated after it see one model, and that model is llama.cpp's.
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
            GgufTensorType.F32 => rows.clone(),
            GgufTensorType.F16 => rows.to(ScalarType.Float16).to(ScalarType.Float32),
            GgufTensorType.BF16 => rows.to(ScalarType.BFloat16).to(ScalarType.Float32),
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
        var inverse = where(amax.eq(0), zeros_like(amax), 127f / amax);
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
        var iscale = where(max.eq(0), zeros_like(max), -127f / max);
        var q = (blocks * iscale).round().clamp_max(127);
        var d = where(iscale.eq(0), zeros_like(iscale), iscale.reciprocal());
        return (q * d).reshape(rows.shape);
    }
}
