using SharpTune.Checkpoints.Gguf;
using SharpTune.Quantization;
using SharpTune.Tests.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Quantization;

public unsafe class QuantizedKernelsTests
{
    public static TheoryData<GgufTensorType> AllTypes => new(KernelCases.Types);

    public static TheoryData<GgufTensorType> BlockTypes => new(KernelCases.Types.Where(t => GgufTensorTypes.BlockSize(t) > 1));

    public static TheoryData<KernelPath> Paths => new(Enum.GetValues<KernelPath>().Where(p => p <= QuantizedKernels.Supported));

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void DequantizeRows_equals_the_gguf_decoders_bit_for_bit(GgufTensorType type)
    {
        var random = new Random(3);
        int rows = 7, columns = KernelCases.Columns(type);
        byte[] blocks = KernelCases.RandomBlocks(type, rows, columns, random);
        using var w = QuantizedMatrix.Copy(type, rows, columns, blocks);
        var expected = new float[rows * columns];
        GgufDequantize.Blocks(type, blocks, expected);

        var all = KernelCases.Dequantize(w);
        Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), all.Select(BitConverter.SingleToInt32Bits));
        var some = new float[3 * columns];
        fixed (float* p = some) QuantizedKernels.DequantizeRows(w, 2, 3, p);
        Assert.Equal(expected.Skip(2 * columns).Take(3 * columns), some);
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void DequantizeRows_to_bf16_rounds_as_torch(GgufTensorType type)
    {
        var random = new Random(5);
        int rows = 5, columns = 3 * Math.Max(32, GgufTensorTypes.BlockSize(type));
        using var w = QuantizedMatrix.Copy(type, rows, columns, KernelCases.RandomBlocks(type, rows, columns, random));
        float[] values = KernelCases.Dequantize(w);
        using var expected = tensor(values).to(ScalarType.BFloat16);
        var bits = new ushort[rows * columns];
        fixed (ushort* p = bits) QuantizedKernels.DequantizeRows(w, 0, rows, p);
        Assert.Equal(expected.bytes.ToArray(), bits.SelectMany(BitConverter.GetBytes).ToArray());
    }

    [Fact]
    public void Bf16_rounding_handles_ties_and_infinities_as_torch_and_keeps_nan()
    {
        // torch's own NaN differs by path (0x7FC0 scalar, 0xFFFF vectorized), so NaN is only checked to stay NaN.
        var nan = new ushort[1];
        float nanValue = float.NaN;
        fixed (ushort* d = nan) Bf16.FromSingle(&nanValue, d, 1);
        Assert.True(float.IsNaN(BitConverter.Int32BitsToSingle(nan[0] << 16)));
        float[] values = [1f + 1f / 256, 1f + 3f / 256, -1f - 1f / 256, float.PositiveInfinity, float.NegativeInfinity,
            float.MaxValue, 1e-40f, -0f, 3.14159f, 65504f, 1f + 1f / 128 + 1f / 65536];
        using var expected = tensor(values).to(ScalarType.BFloat16);
        var bits = new ushort[values.Length];
        fixed (float* s = values)
        fixed (ushort* d = bits) Bf16.FromSingle(s, d, values.Length);
        Assert.Equal(expected.bytes.ToArray(), bits.SelectMany(BitConverter.GetBytes).ToArray());
    }

    [Theory]
    [MemberData(nameof(BlockTypes))]
    public void Quantize_writes_the_bytes_llama_cpp_writes(GgufTensorType type)
    {
        var random = new Random(11);
        int rows = 5, columns = 2 * Math.Max(32, GgufTensorTypes.BlockSize(type));
        // Varied magnitudes, an all-zero row, a constant row and a row with an offset, so every branch of the
        // reference quantizers (zero scale, positive min, clamps) is reached.
        var values = Enumerable.Range(0, rows * columns).Select(i => (i / columns) switch
        {
            1 => 0f,
            2 => 0.25f,
            3 => (float)(random.NextDouble() * 3 + 2),
            _ => (float)((random.NextDouble() - 0.5) * (i % 41 == 0 ? 30 : 2)),
        }).ToArray();
        byte[] expected = GgmlReference.Quantize(type, values, rows, columns);
        using var w = QuantizedMatrix.Quantize(type, values, rows, columns);
        for (int r = 0; r < rows; r++)
            Assert.True(expected.AsSpan(r * (int)w.RowBytes, (int)w.RowBytes).SequenceEqual(w.RowBlocks(r)), $"{type} row {r} differs from ggml's bytes");
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void MatMul_equals_dequantize_then_fp32_within_the_activation_rounding_bound(KernelPath path)
    {
        var failures = KernelCases.CheckAllTypes(path, seed: 23);
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    /// <summary>
    /// The default products run the path's kernels, except the nibble types on an AMD AVX-512 CPU, which take the 256-bit
    /// ones (<see cref="QuantizedKernels.NarrowNibbles"/>): bit for bit what that explicit path gives.
    /// </summary>
    [Fact]
    public void The_default_products_are_the_chosen_paths_bit_for_bit()
    {
        var random = new Random(37);
        foreach (var type in KernelCases.Types)
        {
            int columns = KernelCases.Columns(type), rows = 11, n = 2;
            using var w = QuantizedMatrix.Copy(type, rows, columns, KernelCases.RandomBlocks(type, rows, columns, random));
            bool nibbles = type is GgufTensorType.Q4_0 or GgufTensorType.Q4_1 or GgufTensorType.Q5_0 or GgufTensorType.Q5_1;
            var chosen = QuantizedKernels.Path == KernelPath.Avx512 && QuantizedKernels.NarrowNibbles && nibbles ? KernelPath.Avx2 : QuantizedKernels.Path;
            float[] x = KernelCases.RandomActivations(n, columns, random), byDefault = new float[n * rows], explicitly = new float[n * rows];
            fixed (float* px = x, d = byDefault, e = explicitly)
            {
                QuantizedKernels.MatMul(w, px, n, d);
                QuantizedKernels.MatMul(w, px, n, e, chosen);
            }
            Assert.Equal(explicitly, byDefault);
        }
    }

    /// <summary>
    /// A row's product does not depend on the rows computed with it (the float types' multi-row kernels sum each row as the
    /// one-row kernel does): a decode batch gives each row the logits it gets alone, bit for bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(Paths))]
    public void Products_of_many_rows_equal_each_rows_alone_bit_for_bit(KernelPath path)
    {
        var failures = KernelCases.CheckRowsAlone(path, seed: 41);
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Every_path_agrees_with_the_portable_one_up_to_float_rounding(KernelPath path)
    {
        var random = new Random(29);
        foreach (var type in KernelCases.Types)
        {
            int columns = KernelCases.Columns(type) + 3 * GgufTensorTypes.BlockSize(type), rows = 19, n = 3;
            using var w = QuantizedMatrix.Copy(type, rows, columns, KernelCases.RandomBlocks(type, rows, columns, random));
            float[] weights = KernelCases.Dequantize(w), carried = KernelCases.CarriedMagnitude(type, w);
            float[] x = KernelCases.RandomActivations(n, columns, random), portable = new float[n * rows], simd = new float[n * rows];
            fixed (float* px = x, p = portable, s = simd)
            {
                QuantizedKernels.MatMul(w, px, n, p, KernelPath.Portable);
                QuantizedKernels.MatMul(w, px, n, s, path);
            }
            for (int i = 0; i < n; i++)
                for (int r = 0; r < rows; r++)
                {
                    double bound = 2 * KernelCases.Bound(type, weights, carried, x, i, r, columns, activationRounding: false);
                    Assert.True(Math.Abs(portable[i * rows + r] - simd[i * rows + r]) <= bound,
                        $"{type} on {path}: y[{i},{r}] {simd[i * rows + r]} vs portable {portable[i * rows + r]} (bound {bound})");
                }
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void F16_weights_widen_exactly_subnormals_and_infinities_included(KernelPath path)
    {
        // Row 0: subnormal, zero, tiny and huge halves (each product exact in fp32, so the sum is exact to rounding);
        // row 1 adds one +inf, row 2 one NaN.
        ushort[] specials = [0x0001, 0x03FF, 0x8001, 0x0000, 0x8000, 0x0400, 0x7BFF, 0xFBFF, 0x3C00, 0x83FF, 0x0200];
        int columns = 131;
        var halves = new ushort[3 * columns];
        for (int c = 0; c < columns; c++) halves[c] = halves[columns + c] = halves[2 * columns + c] = specials[c % specials.Length];
        halves[columns + 77] = 0x7C00;
        halves[2 * columns + 40] = 0x7E00;
        using var w = QuantizedMatrix.Copy(GgufTensorType.F16, 3, columns, halves.SelectMany(BitConverter.GetBytes).ToArray());
        var x = Enumerable.Range(0, columns).Select(c => 1f + c % 5).ToArray();
        var y = new float[3];
        fixed (float* px = x, py = y) QuantizedKernels.MatMul(w, px, 1, py, path);
        double exact = 0, magnitude = 0;
        for (int c = 0; c < columns; c++)
        {
            exact += (double)(float)BitConverter.UInt16BitsToHalf(halves[c]) * x[c];
            magnitude += Math.Abs((double)(float)BitConverter.UInt16BitsToHalf(halves[c]) * x[c]);
        }
        Assert.True(Math.Abs(y[0] - exact) <= 2 * columns * Math.Pow(2, -24) * magnitude, $"{path}: {y[0]} vs {exact}");
        Assert.Equal(float.PositiveInfinity, y[1]);
        Assert.True(float.IsNaN(y[2]), $"{path}: a NaN weight gave {y[2]}");
    }

    /// <summary>
    /// An F16 matrix with no infinity or NaN runs the AVX-512 kernels that skip mapping those back; they give the bits the
    /// exact kernels give (here: the same rows inside a matrix that holds an infinity, which takes the exact kernels), for
    /// one activation row and for many.
    /// </summary>
    [Theory]
    [MemberData(nameof(Paths))]
    public void F16_kernels_for_finite_matrices_give_the_exact_kernels_bits(KernelPath path)
    {
        var random = new Random(53);
        int rows = 13, columns = 32 * 7 + 5, n = 6;
        var finite = KernelCases.RandomBlocks(GgufTensorType.F16, rows, columns, random);
        var extra = new byte[2 * columns];
        BitConverter.TryWriteBytes(extra.AsSpan(2 * 40), (ushort)0x7C00);            // +inf in the extra row
        using var plain = QuantizedMatrix.Copy(GgufTensorType.F16, rows, columns, finite);
        using var withInfinity = QuantizedMatrix.Copy(GgufTensorType.F16, rows + 1, columns, [.. finite, .. extra]);
        Assert.True(plain.FiniteHalves);
        Assert.False(withInfinity.FiniteHalves);
        using (var q8 = QuantizedMatrix.Copy(GgufTensorType.Q8_0, 2, 32, KernelCases.RandomBlocks(GgufTensorType.Q8_0, 2, 32, random)))
            Assert.False(q8.FiniteHalves);
        float[] x = KernelCases.RandomActivations(n, columns, random);
        foreach (int count in new[] { 1, n })
        {
            float[] fast = new float[count * rows], exact = new float[count * (rows + 1)];
            fixed (float* px = x, f = fast, e = exact)
            {
                QuantizedKernels.MatMul(plain, px, count, f, path);
                QuantizedKernels.MatMul(withInfinity, px, count, e, path);
            }
            for (int i = 0; i < count; i++)
                for (int r = 0; r < rows; r++)
                    Assert.True(BitConverter.SingleToInt32Bits(fast[i * rows + r]) == BitConverter.SingleToInt32Bits(exact[i * (rows + 1) + r]),
                        $"{path}, {count} rows: y[{i},{r}] {fast[i * rows + r]} against the exact kernels' {exact[i * (rows + 1) + r]}");
        }
    }

    [Fact]
    public void MatMul_of_a_quantized_matrix_is_close_to_the_fp32_product()
    {
        // End to end: quantize an fp32 matrix, multiply on the blocks, compare with the fp32 product.
        var random = new Random(31);
        int rows = 33, columns = 256;
        float[] values = KernelCases.RandomActivations(rows, columns, random), x = KernelCases.RandomActivations(1, columns, random);
        using var w = QuantizedMatrix.Quantize(GgufTensorType.Q8_0, values, rows, columns);
        var y = new float[rows];
        fixed (float* px = x, py = y) QuantizedKernels.MatMul(w, px, 1, py);
        for (int r = 0; r < rows; r++)
        {
            double exact = 0, scale = 0;
            for (int c = 0; c < columns; c++)
            {
                exact += values[r * columns + c] * x[c];
                scale += Math.Abs(values[r * columns + c] * x[c]);
            }
            Assert.True(Math.Abs(y[r] - exact) < 0.02 * scale, $"row {r}: {y[r]} vs {exact}");
        }
    }

    [Fact]
    public void Matrices_refuse_widths_that_are_not_whole_blocks_and_unsupported_types()
    {
        var e = Assert.Throws<ArgumentException>(() => QuantizedMatrix.Copy(GgufTensorType.Q4_K, 2, 96, new byte[100]));
        Assert.Contains("256", e.Message);
        Assert.Throws<NotSupportedException>(() => QuantizedMatrix.Copy(GgufTensorType.Q2_K, 1, 256, new byte[84]));
        var size = Assert.Throws<ArgumentException>(() => QuantizedMatrix.Copy(GgufTensorType.Q8_0, 2, 64, new byte[100]));
        Assert.Contains("136", size.Message);
    }

    [Fact]
    public void A_view_disposes_its_owner_and_copies_own_their_memory()
    {
        var owner = new Owner();
        var bytes = new byte[34 * 2];
        fixed (byte* p = bytes)
        {
            var view = QuantizedMatrix.View(GgufTensorType.Q8_0, 2, 32, p, owner);
            Assert.True(view.Data == p);
            Assert.Equal(34, view.RowBytes);
            view.Dispose();
        }
        Assert.True(owner.Disposed);
        var copy = QuantizedMatrix.Copy(GgufTensorType.Q8_0, 2, 32, bytes);
        Assert.Equal(0, (long)copy.Data % 64);
        copy.Dispose();
        Assert.Throws<ObjectDisposedException>(() => copy.RowBlocks(0).ToArray());
    }

    sealed class Owner : IDisposable
    {
        public bool Disposed;
        public void Dispose() => Disposed = true;
    }
}
