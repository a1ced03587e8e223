using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Quantized;
using SharpTune.Quantization;
using SharpTune.Tests.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Quantized;

/// <summary>
/// Rounding equals ggml's, written out apart; and the two places activations are rounded before a product with quantized weights give one model: the dequantized-tile
/// path (<see cref="ActivationRounding"/>, tensor operations over a prompt's rows) and the block kernels
/// (<see cref="ActivationQuantizer"/>, one row at a time on the kernel path in use) round every value to the same
/// float, ties, zero blocks and clamped extremes included; otherwise a prompt and the tokens decoded after it would see
/// two slightly different models.
/// </summary>
public unsafe class ActivationRoundingTests
{
    static float[] Rows(int rows, int columns, int seed)
    {
        var random = new Random(seed);
        var values = new float[rows * columns];
        for (int i = 0; i < values.Length; i++) values[i] = (float)((random.NextDouble() - 0.5) * (i % 53 == 0 ? 30 : 2));
        // A zero block, a block of exact ties (x·127/max lands on .5), and a block whose largest value is negative.
        for (int j = 0; j < 32; j++) values[32 + j] = 0;
        for (int j = 0; j < 32; j++) values[64 + j] = (j % 2 == 0 ? 0.5f : -1.5f) / 127 * 2;
        values[96 + 7] = -50;
        return values;
    }

    [Theory]
    [InlineData(GgufTensorType.Q8_0, 32)]
    [InlineData(GgufTensorType.Q4_1, 32)]
    [InlineData(GgufTensorType.Q4_K, 256)]
    [InlineData(GgufTensorType.Q6_K, 256)]
    public void The_tile_path_and_the_block_kernels_round_every_activation_to_the_same_value(GgufTensorType weights, int block)
    {
        const int rows = 3, columns = 512;
        var values = Rows(rows, columns, seed: (int)weights);
        using var tiles = ActivationRounding.Apply(tensor(values).reshape(rows, columns), weights);
        var expected = tiles.data<float>().ToArray();

        var actual = new float[values.Length];
        fixed (float* x = values)
        {
            var prepared = ActivationQuantizer.Prepare(x, rows, columns, block);
            for (int r = 0; r < rows; r++)
            {
                var row = prepared[r];
                for (int c = 0; c < columns; c++) actual[r * columns + c] = row.D[c / block] * row.Qs[c];
            }
        }
        for (int i = 0; i < values.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]) || expected[i] == actual[i],
                $"{weights} on the {QuantizedKernels.Path} path, value {i} ({values[i]}): tiles {expected[i]}, kernels {actual[i]}");
    }

    /// <summary>
    /// ggml's rounding written out in tensor operations, apart from the code under test: Q8_0, q = round-to-even(x·127/max|x|)
    /// (a true division, as ggml's 127.f/amax) times max|x|/127 rounded to fp16; Q8_K, the element of largest magnitude
    /// with its sign gives iscale = −127/max, q = min(127, round(iscale·x)), times 1/iscale.
    /// </summary>
    static Tensor Reference(Tensor rows, int block)
    {
        using var scope = NewDisposeScope();
        var blocks = rows.reshape(-1, block);
        Tensor result;
        if (block == 32)
        {
            var amax = blocks.abs().amax([1L], keepdim: true);
            var inverse = where(amax.eq(0), zeros_like(amax), full_like(amax, 127f) / amax);
            var d = (amax / 127f).to(ScalarType.Float16).to(ScalarType.Float32);
            result = (blocks * inverse).round() * d;
        }
        else
        {
            var max = blocks.gather(1, blocks.abs().argmax(1, keepdim: true));
            var iscale = where(max.eq(0), zeros_like(max), full_like(max, -127f) / max);
            var d = where(iscale.eq(0), zeros_like(iscale), ones_like(iscale) / iscale);
            result = (blocks * iscale).round().clamp_max(127) * d;
        }
        return result.reshape(rows.shape).MoveToOuterDisposeScope();
    }

    [Theory]
    [InlineData(GgufTensorType.Q5_0, 32)]
    [InlineData(GgufTensorType.Q5_K, 256)]
    public void Rounded_rows_equal_ggmls_rounding_written_out_in_fp32_and_in_bf16(GgufTensorType weights, int block)
    {
        const int rows = 5, columns = 768;
        var values = Rows(rows, columns, seed: 7);
        using var x = tensor(values).reshape(rows, columns);
        using var expected = Reference(x, block);
        using var fp32 = ActivationRounding.Apply(x, weights);
        using var bf16 = ActivationRounding.Apply(x, weights, ScalarType.BFloat16);
        using var expectedBf16 = expected.to(ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, bf16.dtype);
        static float[] Values(Tensor t) { using var f = t.to(ScalarType.Float32); return f.data<float>().ToArray(); }
        Assert.Equal(Values(expected), Values(fp32));                                     // bit for bit (zeros are +0 in both)
        Assert.Equal(Values(expectedBf16), Values(bf16));
        using var strided = x.t().contiguous().t();                                        // a non-contiguous input
        using var again = ActivationRounding.Apply(strided, weights);
        Assert.Equal(Values(expected), Values(again));
        Assert.Throws<ArgumentException>(() => ActivationRounding.Apply(x.narrow(1, 0, 100), weights));
    }

    [Fact]
    public void Values_rounded_for_the_tiles_equal_the_kernels_blocks_on_this_processs_path() =>
        Assert.Empty(KernelCases.CheckActivationValues(seed: 7));

    [Fact]
    public void Float_weights_meet_activations_as_they_are()
    {
        var values = Rows(2, 64, seed: 3);
        foreach (var type in new[] { GgufTensorType.F32, GgufTensorType.F16, GgufTensorType.BF16 })
        {
            using var rounded = ActivationRounding.Apply(tensor(values).reshape(2, 64), type);
            Assert.Equal(values, rounded.data<float>().ToArray());
        }
    }
}
