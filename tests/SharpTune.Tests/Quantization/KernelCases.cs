using System.Buffers.Binary;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Quantization;

namespace SharpTune.Tests.Quantization;

/// <summary>
/// Random matrices in every kernel type and the error a block product may make against dequantize-then-fp32, derived
/// from how the kernels compute: shared by the in-process tests and the child processes that force a lower path.
/// </summary>
static unsafe class KernelCases
{
    public static readonly GgufTensorType[] Types = QuantizedMatrix.SupportedTypes.ToArray();

    /// <summary>
    /// Widths that reach every branch of the kernels: 15 blocks of 32 (eight at a time, four, then a tail of three), three
    /// super-blocks of 256, and an odd width for the float types (vector loop, then a scalar tail).
    /// </summary>
    public static int Columns(GgufTensorType type) => GgufTensorTypes.BlockSize(type) switch { 256 => 768, 32 => 480, _ => 101 };

    /// <summary>Random blocks: random bytes with every fp16 scale (or fp16/bf16 value) replaced by a finite random one.</summary>
    public static byte[] RandomBlocks(GgufTensorType type, int rows, int columns, Random random)
    {
        int blockBytes = GgufTensorTypes.BlockBytes(type), blocks = rows * columns / GgufTensorTypes.BlockSize(type);
        var bytes = new byte[blocks * blockBytes];
        random.NextBytes(bytes);
        Half RandomHalf(double scale) => (Half)((random.NextDouble() * 2 - 1) * scale);
        void Scale(int at, double scale) => BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(at), BitConverter.HalfToUInt16Bits(RandomHalf(scale)));
        for (int b = 0; b < blocks; b++)
        {
            int o = b * blockBytes;
            switch (type)
            {
                case GgufTensorType.F32: BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(o), (float)(random.NextDouble() * 2 - 1)); break;
                case GgufTensorType.F16: Scale(o, 1); break;
                case GgufTensorType.BF16:
                    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(o), (ushort)(BitConverter.SingleToUInt32Bits((float)(random.NextDouble() * 2 - 1)) >> 16));
                    break;
                case GgufTensorType.Q8_0 or GgufTensorType.Q4_0 or GgufTensorType.Q5_0: Scale(o, 0.05); break;
                case GgufTensorType.Q4_1 or GgufTensorType.Q5_1 or GgufTensorType.Q4_K or GgufTensorType.Q5_K:
                    Scale(o, 0.05);
                    Scale(o + 2, 0.05);
                    break;
                case GgufTensorType.Q6_K: Scale(o + 208, 0.01); break;
            }
        }
        return bytes;
    }

    public static float[] RandomActivations(int n, int columns, Random random) =>
        Enumerable.Range(0, n * columns).Select(i => (float)((random.NextDouble() * 2 - 1) * (i % 7 == 0 ? 4 : 1))).ToArray();

    public static float[] Dequantize(QuantizedMatrix w)
    {
        var values = new float[w.Rows * w.Columns];
        fixed (float* v = values) QuantizedKernels.DequantizeRows(w, 0, w.Rows, v);
        return values;
    }

    /// <summary>The activation block the kernels round x to for this type: 32 values (Q8_0), 256 (Q8_K) or none (fp32 kept).</summary>
    public static int ActivationBlock(GgufTensorType type) => type switch
    {
        GgufTensorType.F32 or GgufTensorType.F16 or GgufTensorType.BF16 => 1,
        _ => Math.Max(32, GgufTensorTypes.BlockSize(type)),
    };

    /// <summary>
    /// Per weight element, the magnitude of what the kernel carries through the activation sums rather than through
    /// the integer products: −8·d (Q4_0), −16·d (Q5_0), the min m (Q4_1, Q5_1), dmin·min_j (Q4_K, Q5_K), −32·d·scale
    /// (Q6_K). Float rounding applies to those partial sums, which can exceed the weight itself.
    /// </summary>
    public static float[] CarriedMagnitude(GgufTensorType type, QuantizedMatrix w)
    {
        var result = new float[w.Rows * w.Columns];
        int blockSize = GgufTensorTypes.BlockSize(type);
        for (int r = 0; r < w.Rows; r++)
        {
            var row = w.RowBlocks(r);
            int blockBytes = GgufTensorTypes.BlockBytes(type);
            for (int c = 0; c < w.Columns; c++)
            {
                var block = row.Slice(c / blockSize * blockBytes, blockBytes);
                int j = c % blockSize;
                result[r * w.Columns + c] = Math.Abs(type switch
                {
                    GgufTensorType.Q4_0 => 8 * Half(block, 0),
                    GgufTensorType.Q5_0 => 16 * Half(block, 0),
                    GgufTensorType.Q4_1 or GgufTensorType.Q5_1 => Half(block, 2),
                    GgufTensorType.Q4_K or GgufTensorType.Q5_K => Half(block, 2) * KQuantizers.ScaleMin(block.Slice(4, 12), j / 32).Min,
                    GgufTensorType.Q6_K => 32 * Half(block, 208) * (sbyte)block[192 + j / 16],
                    _ => 0f,
                });
            }
        }
        return result;
    }

    static float Half(ReadOnlySpan<byte> block, int at) => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(block[at..]));

    /// <summary>
    /// The largest |kernel − exact| for y[i, r]. Activation rounding: x = d·q + e with |e| ≤ d/2 per activation
    /// block (d = max|x|/127), so |Σ w·e| ≤ Σ_blocks d/2 · Σ|w|. Float rounding: each block's term takes at most 8
    /// roundings and the sum of K blocks at most K more, each relative 2^-24 of the magnitudes involved
    /// (|w| + what is carried through sums) · |x̂|; doubled for safety of the bound's own arithmetic.
    /// </summary>
    public static double Bound(GgufTensorType type, float[] weights, float[] carried, float[] x, int i, int r, int columns, bool activationRounding = true)
    {
        int block = ActivationBlock(type);
        double rounding = 0, magnitude = 0;
        int blocksPerRow = columns / Math.Max(block, GgufTensorTypes.BlockSize(type));
        for (int b = 0; b < columns / block; b++)
        {
            double amax = 0, wsum = 0;
            for (int c = b * block; c < (b + 1) * block; c++)
            {
                amax = Math.Max(amax, Math.Abs(x[i * columns + c]));
                wsum += Math.Abs(weights[r * columns + c]);
            }
            double d = block > 1 ? amax / 127 : 0;
            if (activationRounding) rounding += d / 2 * wsum;
            for (int c = b * block; c < (b + 1) * block; c++)
                magnitude += (Math.Abs(weights[r * columns + c]) + carried[r * columns + c]) * (Math.Abs(x[i * columns + c]) + d / 2);
        }
        int roundings = (block == 1 ? columns : blocksPerRow) + 8;
        return rounding + 2 * roundings * Math.Pow(2, -24) * magnitude + 1e-30;
    }

    /// <summary>
    /// Activation rows rounded to values (<see cref="ActivationQuantizer.RoundValues"/>, what the dequantized-tile path
    /// multiplies) on this process's path against the blocks the kernels round the same rows to (D·Qs), in fp32 and bf16
    /// (those values rounded as torch rounds them); failures as lines.
    /// </summary>
    public static List<string> CheckActivationValues(int seed)
    {
        var failures = new List<string>();
        var random = new Random(seed);
        foreach (int block in new[] { 32, 256 })
        {
            const int rows = 3, columns = 768;
            float[] x = RandomActivations(rows, columns, random), values = new float[rows * columns];
            for (int j = 0; j < 32; j++) x[32 + j] = 0;                                // a zero block
            var halves = new ushort[rows * columns];
            fixed (float* px = x, pv = values)
            fixed (ushort* ph = halves)
            {
                ActivationQuantizer.RoundValues(px, rows, columns, block, pv, bf16: false);
                ActivationQuantizer.RoundValues(px, rows, columns, block, ph, bf16: true);
                for (int i = 0; i < rows; i++)
                {
                    var row = ActivationQuantizer.Prepare(px + i * columns, 1, columns, block)[0];
                    for (int c = 0; c < columns; c++)
                    {
                        float expected = row.D[c / block] * row.Qs[c];
                        int at = i * columns + c;
                        if (BitConverter.SingleToInt32Bits(values[at]) != BitConverter.SingleToInt32Bits(expected) && values[at] != expected)
                            failures.Add($"{QuantizedKernels.Path} block {block} value [{i},{c}] = {values[at]}, the kernels' {expected}");
                        if (halves[at] != Bf16.FromSingle(expected))
                            failures.Add($"{QuantizedKernels.Path} block {block} bf16 [{i},{c}] = {halves[at]:X4}, expected {Bf16.FromSingle(expected):X4}");
                    }
                }
            }
        }
        return failures;
    }

    /// <summary>
    /// A row's product does not depend on the rows computed with it: for every type, n rows at once (n = 2..9: the
    /// many-row kernels' groups of four, two and one, and two groups of four) against each row alone, bit for bit, on
    /// <paramref name="path"/>; failures as lines. Which groups a kernel takes depends on the registers the process has
    /// (four rows only where AVX-512's 32 are there), so this runs in the lower paths' processes too.
    /// </summary>
    public static List<string> CheckRowsAlone(KernelPath path, int seed)
    {
        var failures = new List<string>();
        var random = new Random(seed);
        foreach (var type in Types)
        {
            int columns = Columns(type) + 3 * GgufTensorTypes.BlockSize(type), rows = 13;
            using var w = QuantizedMatrix.Copy(type, rows, columns, RandomBlocks(type, rows, columns, random));
            for (int n = 2; n <= 9; n++)
            {
                float[] x = RandomActivations(n, columns, random), together = new float[n * rows], alone = new float[n * rows];
                fixed (float* px = x, t = together, a = alone)
                {
                    QuantizedKernels.MatMul(w, px, n, t, path);
                    for (int i = 0; i < n; i++) QuantizedKernels.MatMul(w, px + (long)i * columns, 1, a + (long)i * rows, path);
                }
                for (int k = 0; k < together.Length; k++)
                    if (BitConverter.SingleToInt32Bits(together[k]) != BitConverter.SingleToInt32Bits(alone[k]))
                    {
                        failures.Add($"{path} {type} n={n}: y[{k / rows},{k % rows}] = {together[k]} with the other rows, {alone[k]} alone");
                        break;
                    }
            }
        }
        return failures;
    }

    /// <summary>Products of every type on every path this process supports, checked against dequantize-then-fp64; failures as lines.</summary>
    public static List<string> CheckAllTypes(KernelPath path, int seed)
    {
        var failures = new List<string>();
        var random = new Random(seed);
        foreach (var type in Types)
        {
            int columns = Columns(type), rows = 37;
            using var w = QuantizedMatrix.Copy(type, rows, columns, RandomBlocks(type, rows, columns, random));
            float[] weights = Dequantize(w), carried = CarriedMagnitude(type, w);
            for (int n = 1; n <= 5; n++)
            {
                float[] x = RandomActivations(n, columns, random), y = new float[n * rows];
                fixed (float* px = x, py = y) QuantizedKernels.MatMul(w, px, n, py, path);
                for (int i = 0; i < n; i++)
                    for (int r = 0; r < rows; r++)
                    {
                        double exact = 0;
                        for (int c = 0; c < columns; c++) exact += (double)weights[r * columns + c] * x[i * columns + c];
                        double bound = Bound(type, weights, carried, x, i, r, columns);
                        if (!(Math.Abs(y[i * rows + r] - exact) <= bound))
                            failures.Add($"{path} {type} n={n} y[{i},{r}] = {y[i * rows + r]}, exact {exact}, bound {bound}");
                    }
            }
        }
        return failures;
    }
}
