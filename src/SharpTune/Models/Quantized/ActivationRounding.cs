using SharpTune.Checkpoints.Gguf;
using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Models.Quantized;

/// <summary>
/// Rounds activations as the block kernels do before their products with a weight type, which is ggml's rounding for
/// the quantized types (its <c>vec_dot_type</c>): Q8_0 blocks of 32 (scale max|x|/127 stored in fp16) for Q4_0, Q4_1,
/// Q5_0, Q5_1 and Q8_0 weights; Q8_K blocks of 256 (scale max/-127 in fp32) for the K-quants. Float weights (F32, F16,
/// BF16) meet fp32 activations in the kernels, so nothing is rounded for them (ggml rounds to fp16/bf16 there: a
/// difference of half an fp16 ulp). The dequantized-tile path applies the same rounding (the block kernels' own code,
/// <see cref="ActivationQuantizer"/>, written back as values), so a prompt and the tokens generated after it see one model.
/// </summary>
public static class ActivationRounding
{
    /// <summary>
    /// The rounded rows (..., in) in <paramref name="dtype"/> (float32, or bfloat16: the float32 values rounded as torch
    /// rounds them); <paramref name="x"/> is left as it is. On the calling thread alone where libtorch runs on two threads
    /// or fewer (<see cref="QuantizedOps.FewCores"/>), else over the kernel threads.
    /// </summary>
    public static unsafe Tensor Apply(Tensor x, GgufTensorType weightType, ScalarType dtype = ScalarType.Float32)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"rounded activations are float32 or bfloat16, not {dtype}", nameof(dtype));
        int block = weightType switch
        {
            // The block kernels multiply float weights by fp32 activations (FMA), so the tile path does too.
            GgufTensorType.F32 or GgufTensorType.F16 or GgufTensorType.BF16 => 1,
            GgufTensorType.Q4_0 or GgufTensorType.Q4_1 or GgufTensorType.Q5_0 or GgufTensorType.Q5_1 or GgufTensorType.Q8_0 => 32,
            GgufTensorType.Q4_K or GgufTensorType.Q5_K or GgufTensorType.Q6_K => 256,
            _ => throw new NotSupportedException($"no activation rounding is known for {weightType} weights"),
        };
        if (block == 1) return x.to(dtype, copy: true);
        int columns = (int)x.shape[^1];
        if (columns % block != 0)
            throw new ArgumentException($"{weightType} weights take rows in whole blocks of {block}; these rows have {columns} values");
        using var values = x.to(ScalarType.Float32);
        using var rows = values.contiguous();
        var rounded = empty(x.shape, dtype);
        fixed (byte* source = rows.bytes)
        fixed (byte* target = rounded.bytes)
            ActivationQuantizer.RoundValues((float*)source, (int)(rows.numel() / columns), columns, block, target, dtype == ScalarType.BFloat16, QuantizedOps.FewCores);
        return rounded;
    }
}
