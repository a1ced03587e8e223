using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SharpTune.Quantization;

/// <summary>
/// One activation row as the block kernels read it: the fp32 values (for F32/F16/BF16 weights) or the values rounded to
/// 8-bit blocks once per product, as ggml's Q8_0 (blocks of 32, for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0) or Q8_K (blocks of 256
/// with sums per 16, for the K-quants), exactly as ggml rounds them (Q8_0's scale rounded to fp16 as its block stores it).
/// x ≈ D[b]·Qs[i]; per 32-block Sum[b] = D[b]·ΣQs (what the offsets and mins of the weights multiply); per 16 values
/// BSums[k] = ΣQs.
/// </summary>
unsafe struct Q8Row
{
    public float* X;
    /// <summary>For F16 weights on AVX-512: X with each 32 values reordered as the 16 even ones, then the 16 odd ones.</summary>
    public float* XPairs;
    public sbyte* Qs;
    public float* D;
    public float* Sum;
    public short* BSums;
}

/// <summary>Rounds activation rows to <see cref="Q8Row"/> blocks in a per-thread scratch that is reused across products.</summary>
static unsafe class ActivationQuantizer
{
    [ThreadStatic] static byte* scratch;
    [ThreadStatic] static long scratchBytes;

    /// <summary>
    /// n rows of <paramref name="columns"/> values at x, rounded to blocks of <paramref name="block"/> (32 or 256; 1: fp32
    /// kept). With <paramref name="splitHalves"/> (32-blocks for <see cref="Avx512Dots"/>), each group of four whole
    /// blocks holds the four first halves (16 values each), then the four second halves; the last blocks, fewer than
    /// four, stay in order. With <paramref name="evenOdd"/> (F16 on AVX-512, block 1) the fp32 row is also kept with each 32
    /// values as the even ones, then the odd ones (<see cref="Q8Row.XPairs"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Q8Row* Prepare(float* x, int n, int columns, int block, bool splitHalves = false, bool evenOdd = false)
    {
        int blocks = block > 1 ? columns / block : 0;
        long perRow = block > 1 ? columns + 4L * blocks * 2 + 2L * (columns / 16) + 16 : evenOdd ? 4L * columns + 64 : 0;
        byte* memory = Scratch(sizeof(Q8Row) * (long)n + perRow * n + 64);
        var rows = (Q8Row*)memory;
        byte* next = memory + ((sizeof(Q8Row) * n + 63) & ~63);
        for (int i = 0; i < n; i++)
        {
            var row = &rows[i];
            row->X = x + (long)i * columns;
            if (evenOdd)
            {
                row->XPairs = (float*)next;
                next += 4L * columns + 64;
                next = (byte*)(((nint)next + 63) & ~(nint)63);
                for (int c = 0; c + 32 <= columns; c += 32)
                    for (int j = 0; j < 16; j++)
                    {
                        row->XPairs[c + j] = row->X[c + 2 * j];
                        row->XPairs[c + 16 + j] = row->X[c + 2 * j + 1];
                    }
            }
            if (block == 1) continue;
            row->Qs = (sbyte*)next; next += columns;
            row->D = (float*)next; next += 4L * blocks;
            row->Sum = (float*)next; next += 4L * blocks;
            row->BSums = (short*)next; next += 2L * (columns / 16);
            next = (byte*)(((nint)next + 15) & ~(nint)15);
            Round(row->X, columns, block, row);
            if (splitHalves) SplitHalves(row->Qs, columns / 32 / 4);
        }
        return rows;
    }

    /// <summary>
    /// Rows [0, n) of <paramref name="columns"/> values at x, rounded to blocks of <paramref name="block"/> (32 or 256)
    /// exactly as <see cref="Prepare"/> rounds them, written back as values (D·q) to <paramref name="dst"/>: fp32, or bf16
    /// bits (torch's rounding of those fp32 values) when <paramref name="bf16"/>. Rows are split over the kernel threads,
    /// or all computed on the calling thread with <paramref name="callerOnly"/>.
    /// </summary>
    public static void RoundValues(float* x, int n, int columns, int block, void* dst, bool bf16, bool callerOnly = false)
    {
        if (block is not (32 or 256) || columns % block != 0)
            throw new ArgumentException($"rows of {columns} values do not split into blocks of {block}");
        var job = new ValuesJob { X = x, Columns = columns, Block = block, Dst = dst, Bf16 = bf16 };
        KernelThreadPool.Shared.Run(n, &RoundValuesRow, &job, callerOnly);
    }

    struct ValuesJob
    {
        public float* X;
        public int Columns, Block;
        public void* Dst;
        public bool Bf16;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void RoundValuesRow(void* state, int r)
    {
        var job = (ValuesJob*)state;
        int columns = job->Columns, block = job->Block;
        var row = Prepare(job->X + (long)r * columns, 1, columns, block);
        float* values = job->Bf16 ? Bf16.RowScratch(columns) : (float*)job->Dst + (long)r * columns;
        for (int b = 0; b < columns / block; b++)
        {
            sbyte* q = row->Qs + (long)b * block;
            float* v = values + (long)b * block;
            if (Avx2.IsSupported)
            {
                var d = Vector256.Create(row->D[b]);
                for (int j = 0; j < block; j += 8)
                    (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + j)) * d).Store(v + j);
            }
            else
            {
                float d = row->D[b];
                for (int j = 0; j < block; j++) v[j] = d * q[j];
            }
        }
        if (job->Bf16) Bf16.FromSingle(values, (ushort*)job->Dst + (long)r * columns, columns);
    }

    static void SplitHalves(sbyte* qs, int groups)
    {
        var group = stackalloc sbyte[128];
        for (int g = 0; g < groups; g++, qs += 128)
        {
            new Span<sbyte>(qs, 128).CopyTo(new Span<sbyte>(group, 128));
            for (int k = 0; k < 4; k++)
            {
                new Span<sbyte>(group + 32 * k, 16).CopyTo(new Span<sbyte>(qs + 16 * k, 16));
                new Span<sbyte>(group + 32 * k + 16, 16).CopyTo(new Span<sbyte>(qs + 64 + 16 * k, 16));
            }
        }
    }

    // As ggml's x86 quantizers, so the block products equal llama.cpp's and the dequantized-tile path's rounding
    // (the models' ActivationRounding): blocks of 32 (quantize_row_q8_0): q = round-to-even(x·127/max|x|),
    // d = max|x|/127 kept in fp16 as the block stores it; blocks of 256 (quantize_row_q8_K): the first element of largest
    // magnitude, with its sign, gives iscale = -127/max, q = min(127, round-to-even(iscale·x)), d = 1/iscale in fp32.
    static (float D, float Inverse) Scales(float* xb, int block, float amax)
    {
        if (amax == 0) return (0, 0);
        if (block == 32) return ((float)(Half)(amax / 127), 127 / amax);
        float max = 0;
        for (int j = 0; j < block; j++)
            if (MathF.Abs(xb[j]) == amax) { max = xb[j]; break; }
        float iscale = -127 / max;
        return (1 / iscale, iscale);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Round(float* x, int columns, int block, Q8Row* row)
    {
        if (Avx2.IsSupported && QuantizedKernels.Path != KernelPath.Portable)
        {
            RoundAvx2(x, columns, block, row);
            return;
        }
        for (int b = 0; b < columns / block; b++)
        {
            float* xb = x + (long)b * block;
            sbyte* q = row->Qs + (long)b * block;
            float amax = 0;
            for (int j = 0; j < block; j++) amax = MathF.Max(amax, MathF.Abs(xb[j]));
            var (d, id) = Scales(xb, block, amax);
            int sum = 0;
            for (int j = 0; j < block; j++)
            {
                int v = Math.Min(127, (int)MathF.Round(xb[j] * id));
                q[j] = (sbyte)v;
                sum += v;
            }
            row->D[b] = d;
            row->Sum[b] = d * sum;
        }
        for (int k = 0; k < columns / 16; k++)
        {
            int s = 0;
            for (int j = 0; j < 16; j++) s += row->Qs[16 * k + j];
            row->BSums[k] = (short)s;
        }
    }

    // The same rounding eight lanes at a time: vcvtps2dq rounds half to even as MathF.Round does, so the bytes are equal.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void RoundAvx2(float* x, int columns, int block, Q8Row* row)
    {
        var signless = Vector256.Create(0x7FFFFFFF).AsSingle();
        for (int b = 0; b < columns / block; b++)
        {
            float* xb = x + (long)b * block;
            sbyte* q = row->Qs + (long)b * block;
            var amax = Vector256<float>.Zero;
            for (int j = 0; j < block; j += 8) amax = Avx.Max(amax, Avx.LoadVector256(xb + j) & signless);
            var halves = Vector128.Max(amax.GetLower(), amax.GetUpper());
            var (d, inverse) = Scales(xb, block, MathF.Max(MathF.Max(halves[0], halves[1]), MathF.Max(halves[2], halves[3])));
            var id = Vector256.Create(inverse);
            var top = Vector256.Create(127);
            var sum = Vector256<int>.Zero;
            for (int j = 0; j < block; j += 32)
            {
                var v0 = Avx2.Min(Avx.ConvertToVector256Int32(Avx.LoadVector256(xb + j) * id), top);
                var v1 = Avx2.Min(Avx.ConvertToVector256Int32(Avx.LoadVector256(xb + j + 8) * id), top);
                var v2 = Avx2.Min(Avx.ConvertToVector256Int32(Avx.LoadVector256(xb + j + 16) * id), top);
                var v3 = Avx2.Min(Avx.ConvertToVector256Int32(Avx.LoadVector256(xb + j + 24) * id), top);
                Vector256.Narrow(Vector256.Narrow(v0, v1), Vector256.Narrow(v2, v3)).Store(q + j);
                var first = v0 + v1;
                var second = v2 + v3;
                row->BSums[(b * block + j) / 16] = (short)Vector256.Sum(first);
                row->BSums[(b * block + j) / 16 + 1] = (short)Vector256.Sum(second);
                sum += first + second;
            }
            row->D[b] = d;
            row->Sum[b] = d * Vector256.Sum(sum);
        }
    }

    static byte* Scratch(long bytes)
    {
        if (bytes > scratchBytes)
        {
            if (scratch != null) NativeMemory.AlignedFree(scratch);
            scratchBytes = Math.Max(bytes, 2 * scratchBytes);
            scratch = (byte*)NativeMemory.AlignedAlloc((nuint)scratchBytes, 64);
        }
        return scratch;
    }
}
