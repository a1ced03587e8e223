using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Quantized;
using SharpTune.Quantization;
using SharpTune.Tests.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Quantized;

/// <summary>
/// The many-row products over stored blocks (dequantized tiles, then libtorch's GEMM) in both tile dtypes. In float32
/// the product is the one over the dequantized weight; in bf16 it may differ by what rounding to bf16 does, derived
/// below, whatever the CPU (libtorch accumulates bf16 products in fp32 with or without native bf16 instructions).
/// </summary>
public class QuantizedOpsTests
{
    const int Rows = 37;                                       // above QuantizedOps.KernelRows: the tile path

    /// <summary>
    /// bf16 keeps 8 significant bits, so rounding changes a value by at most u = 2⁻⁸ of itself. A product of two rounded
    /// factors is within 2u + u² of the exact one; fp32 sums of k terms add k·2⁻²⁴ of Σ|terms| (k ≤ 1,000 here: 6e-5);
    /// the bf16 result is rounded once more (u of itself). Per element: |ŷ − y| ≤ (2u + u² + 1e-4)·Σ|x||w| + u·|ŷ|.
    /// </summary>
    static void AssertWithinBf16(float[] exact, float[] bf16, float[] magnitudes, string what)
    {
        const double u = 1.0 / 256;
        for (int i = 0; i < exact.Length; i++)
        {
            double bound = (2 * u + u * u + 1e-4) * magnitudes[i] + u * Math.Abs(bf16[i]) + 1e-30;
            Assert.True(Math.Abs(bf16[i] - exact[i]) <= bound,
                $"{what}, element {i}: bf16 tiles {bf16[i]}, fp32 tiles {exact[i]}, allowed {bound:E3}");
        }
    }

    static (QuantizedMatrix W, Tensor Dense) RandomMatrix(GgufTensorType type, int rows, int columns, int seed)
    {
        var w = QuantizedMatrix.Copy(type, rows, columns, KernelCases.RandomBlocks(type, rows, columns, new Random(seed)));
        return (w, QuantizedOps.Dequantize(w));
    }

    [Theory]
    [InlineData(GgufTensorType.Q8_0, true)]
    [InlineData(GgufTensorType.Q4_0, false)]
    [InlineData(GgufTensorType.Q5_1, true)]
    [InlineData(GgufTensorType.Q4_K, true)]
    [InlineData(GgufTensorType.Q6_K, false)]
    public void Bf16_tiles_give_the_fp32_product_within_bf16s_rounding(GgufTensorType type, bool round)
    {
        int columns = KernelCases.Columns(type), outputs = 45;
        var (w, dense) = RandomMatrix(type, outputs, columns, seed: (int)type);
        using (w)
        using (dense)
        {
            using var x = tensor(KernelCases.RandomActivations(Rows, columns, new Random(5)), [Rows, columns]);
            Tensor Product(ScalarType tiles)
            {
                using var precision = QuantizedOps.UseTileDtype(tiles);
                return QuantizedOps.Linear(x, w, null, roundActivations: round);
            }
            using var exact = Product(ScalarType.Float32);
            using var bf16 = Product(ScalarType.BFloat16);
            Assert.Equal(ScalarType.Float32, bf16.dtype);
            // fp32 tiles: the product over the dequantized weight (of the rounded rows, when rounding).
            using var rows = round ? ActivationRounding.Apply(x, type) : x.clone();
            using var reference = rows.matmul(dense.t());
            Tolerances.AssertClose(reference.data<float>().ToArray(), exact.data<float>().ToArray(), 1e-5, $"{type} fp32 tiles");
            using var magnitudes = rows.abs().matmul(dense.abs().t());
            AssertWithinBf16(exact.data<float>().ToArray(), bf16.data<float>().ToArray(), magnitudes.data<float>().ToArray(), $"{type} product");
        }
    }

    [Theory]
    [InlineData(GgufTensorType.Q8_0)]
    [InlineData(GgufTensorType.Q4_K)]
    public void The_input_gradient_through_bf16_tiles_is_the_fp32_one_within_bf16s_rounding_over_many_tiles(GgufTensorType type)
    {
        int columns = KernelCases.Columns(type), outputs = 70;
        var (w, dense) = RandomMatrix(type, outputs, columns, seed: 3);
        using (w)
        using (dense)
        {
            using var gradOutput = tensor(KernelCases.RandomActivations(Rows, outputs, new Random(9)), [Rows, outputs]);
            Tensor Gradient(ScalarType tiles, long tileBytes)
            {
                using var precision = QuantizedOps.UseTileDtype(tiles);
                using var size = QuantizedOps.UseTileBytes(tileBytes);
                using var x = zeros(Rows, columns, requires_grad: true);
                using var y = QuantizedOps.Linear(x, w, null, roundActivations: false);
                y.backward([gradOutput]);
                return x.grad!.clone();
            }
            // 16 rows a tile (the least): 70 output rows are five tiles, each tile's part summed into dX.
            using var oneTile = Gradient(ScalarType.Float32, 32L << 20);
            using var exact = Gradient(ScalarType.Float32, 16L * 4 * columns);
            using var bf16 = Gradient(ScalarType.BFloat16, 16L * 2 * columns);
            using var reference = gradOutput.matmul(dense);
            Tolerances.AssertClose(reference.data<float>().ToArray(), oneTile.data<float>().ToArray(), 1e-5, $"{type} one tile");
            Tolerances.AssertClose(reference.data<float>().ToArray(), exact.data<float>().ToArray(), 1e-5, $"{type} five tiles");
            // Five bf16 tile products, each rounded to bf16 once, then summed in fp32: the results' roundings add u of each
            // part, at most u·(1 + 2u)·Σ|g||w| together, so the bound is (3u + 3u² + 1e-4)·Σ|g||w|, which 1.51 times the
            // one-product magnitude term covers.
            using var magnitudes = gradOutput.abs().matmul(dense.abs());
            var bound = magnitudes.data<float>().ToArray();
            AssertWithinBf16(exact.data<float>().ToArray(), bf16.data<float>().ToArray(), [.. bound.Select(m => m * 1.51f)], $"{type} dX");
        }
    }

    [Fact]
    public void Float_weights_are_multiplied_at_the_activations_dtype_whatever_the_tile_dtype()
    {
        var (w, dense) = RandomMatrix(GgufTensorType.F16, 23, 101, seed: 1);
        using (w)
        using (dense)
        using (QuantizedOps.UseTileDtype(ScalarType.BFloat16))
        {
            Assert.Equal(ScalarType.Float32, QuantizedOps.GemmDtype(w, ScalarType.Float32));
            using var x = randn(Rows, 101);
            using var y = QuantizedOps.Linear(x, w, null, roundActivations: true);
            using var reference = x.matmul(dense.t());
            Tolerances.AssertClose(reference.data<float>().ToArray(), y.data<float>().ToArray(), 1e-5, "F16 weights");
        }
        using var blocks = QuantizedMatrix.Copy(GgufTensorType.Q8_0, 2, 32, KernelCases.RandomBlocks(GgufTensorType.Q8_0, 2, 32, new Random(1)));
        using (QuantizedOps.UseTileDtype(ScalarType.BFloat16))
        {
            Assert.Equal(ScalarType.BFloat16, QuantizedOps.GemmDtype(blocks, ScalarType.Float32));
            Assert.Equal(ScalarType.BFloat16, QuantizedOps.GemmDtype(blocks, ScalarType.BFloat16));
        }
        using (QuantizedOps.UseTileDtype(ScalarType.Float32))
            Assert.Equal(ScalarType.BFloat16, QuantizedOps.GemmDtype(blocks, ScalarType.BFloat16)); // a bf16 model stays bf16
    }

    [Fact]
    public void Tiles_default_to_bf16_exactly_where_the_cpu_multiplies_bf16_natively()
    {
        if (Environment.GetEnvironmentVariable("SHARPTUNE_TILE_DTYPE") is { Length: > 0 }) return; // the process chose
        Assert.Equal(QuantizedOps.NativeBf16 ? ScalarType.BFloat16 : ScalarType.Float32, QuantizedOps.DefaultTileDtype);
        Assert.Equal(QuantizedOps.DefaultTileDtype, QuantizedOps.TileDtype);
        using (QuantizedOps.UseTileDtype(ScalarType.Float32)) Assert.Equal(ScalarType.Float32, QuantizedOps.TileDtype);
        Assert.Equal(QuantizedOps.DefaultTileDtype, QuantizedOps.TileDtype);
        Assert.Throws<ArgumentException>(() => QuantizedOps.UseTileDtype(ScalarType.Float16));
    }
}
