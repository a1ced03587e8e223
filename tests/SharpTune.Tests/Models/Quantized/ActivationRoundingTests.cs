using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Quantized;
using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Quantized;

/// <summary>
/// The two places activations are rounded before a product with quantized weights give one model: the dequantized-tile
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
