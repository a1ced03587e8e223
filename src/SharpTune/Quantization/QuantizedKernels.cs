using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using SharpTune.Checkpoints.Gguf;

namespace SharpTune.Quantization;

/// <summary>The instruction sets a kernel is written for, lowest first.</summary>
public enum KernelPath { Portable, Avx2, Avx512 }

/// <summary>
/// Products, dequantization and quantization on <see cref="QuantizedMatrix"/> blocks. Batch-1 products follow ggml's
/// way: the activation row is rounded once per product to 8-bit blocks (<see cref="ActivationQuantizer"/>) and each
/// weight block meets its activation block in integer dot products (u8·s8 pairs, then pairs of shorts), scaled in
/// float; F32/F16/BF16 rows are fp32 fused multiply-adds. Output rows are split over <see cref="KernelThreadPool"/>.
/// </summary>
public static unsafe class QuantizedKernels
{
    /// <summary>The best path this process can run: the CPU's, lowered by DOTNET_EnableAVX512=0 / DOTNET_EnableAVX2=0.</summary>
    public static KernelPath Supported { get; } =
        Avx512BW.IsSupported && Avx512F.VL.IsSupported && Fma.IsSupported ? KernelPath.Avx512
        : Avx2.IsSupported && Fma.IsSupported ? KernelPath.Avx2
        : KernelPath.Portable;

    /// <summary>The path in use: <see cref="Supported"/>, or lower when SHARPTUNE_KERNELS=portable|avx2|avx512 asks for it.</summary>
    public static KernelPath Path { get; } = Choose(Environment.GetEnvironmentVariable("SHARPTUNE_KERNELS"));

    static KernelPath Choose(string? asked)
    {
        KernelPath? wanted = asked?.Trim().ToLowerInvariant() switch
        {
            null or "" => null,
            "portable" => KernelPath.Portable,
            "avx2" => KernelPath.Avx2,
            "avx512" => KernelPath.Avx512,
            _ => throw new InvalidOperationException($"SHARPTUNE_KERNELS={asked}: expected portable, avx2 or avx512"),
        };
        return wanted is { } w && w < Supported ? w : Supported;
    }

    /// <summary>Threads a product uses, the caller's included (Environment.ProcessorCount by default).</summary>
    public static int Threads
    {
        get => KernelThreadPool.Shared.Threads;
        set => KernelThreadPool.Shared.Threads = value;
    }

    /// <summary>
    /// Whether the default AVX-512 path computes the nibble types (Q4_0, Q4_1, Q5_0, Q5_1) with their 256-bit kernels:
    /// on AMD's AVX-512 CPUs, which run a 512-bit operation as two 256-bit halves, those measured 6-16 % faster per core
    /// than the 512-bit ones (bench quant-kernels, AMD EPYC family 25: Q4_0 17.8 against 21.2 ms a token on one core).
    /// An explicit <see cref="KernelPath.Avx512"/> (tests, benchmarks) still runs every 512-bit kernel.
    /// </summary>
    public static bool NarrowNibbles { get; } = IsAmd();

    static bool IsAmd()
    {
        if (!X86Base.IsSupported) return false;
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        return (ebx, edx, ecx) == (0x68747541, 0x69746E65, 0x444D4163); // "AuthenticAMD"
    }

    /// <summary>y (n, Rows) = x (n, Columns) · Wᵀ for few rows n: SIMD on the blocks, threaded over output rows.</summary>
    public static void MatMul(QuantizedMatrix w, float* x, int n, float* y) => MatMul(w, x, n, y, Path, wideNibbles: !NarrowNibbles);

    /// <summary>The same on a given path (for tests and benchmarks), every kernel of that path; throws when this process cannot run it.</summary>
    public static void MatMul(QuantizedMatrix w, float* x, int n, float* y, KernelPath path) => MatMul(w, x, n, y, path, wideNibbles: true);

    static void MatMul(QuantizedMatrix w, float* x, int n, float* y, KernelPath path, bool wideNibbles)
    {
        if (path > Supported) throw new PlatformNotSupportedException($"the {path} kernels need instructions this process lacks (it supports {Supported})");
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), $"rows of x must be non-negative, got {n}");
        if (n == 0) return;
        int block = w.Type switch
        {
            GgufTensorType.F32 or GgufTensorType.F16 or GgufTensorType.BF16 => 1,
            GgufTensorType.Q4_K or GgufTensorType.Q5_K or GgufTensorType.Q6_K => 256,
            _ => 32,
        };
        // The path whose kernels run: the 256-bit ones for the nibble types where NarrowNibbles chose them on AVX-512.
        var kernels = path == KernelPath.Avx512 && !wideNibbles && IsNibbles(w.Type) ? KernelPath.Avx2 : path;
        var job = new MatMulJob
        {
            W = w.Data, RowBytes = w.RowBytes, Rows = w.Rows, Columns = w.Columns, N = n, Y = y,
            Acts = ActivationQuantizer.Prepare(x, n, w.Columns, block, splitHalves: SplitsHalves(w.Type, kernels),
                evenOdd: path == KernelPath.Avx512 && w.Type == GgufTensorType.F16),
            Dot = Dot(w.Type, kernels),
            ManyRows = n <= 1 ? null : ManyRows(w.Type, kernels),
        };
        if (path == KernelPath.Avx512 && w.Type == GgufTensorType.F16 && w.FiniteHalves)
        {
            job.Dot = &FloatDots.F16FiniteAvx512;
            job.ManyRows = n <= 1 ? null : &FloatDots.F16FiniteRowsAvx512;
        }
        int threads = Math.Max(1, Threads);
        job.ChunkRows = Math.Max(4, (w.Rows + 8 * threads - 1) / (8 * threads));
        KernelThreadPool.Shared.Run((w.Rows + job.ChunkRows - 1) / job.ChunkRows, &MatMulChunk, &job);
    }

    static bool IsNibbles(GgufTensorType type) => type is GgufTensorType.Q4_0 or GgufTensorType.Q4_1 or GgufTensorType.Q5_0 or GgufTensorType.Q5_1;

    // The kernels that read the activation in split halves: the AVX-512 nibble kernels (Avx512Dots) and the 256-bit
    // four-bit ones (Avx2NibbleDots); the path is the one the product runs (Avx2 where NarrowNibbles chose it).
    static bool SplitsHalves(GgufTensorType type, KernelPath path) =>
        (IsNibbles(type) && path == KernelPath.Avx512 && Avx512Dots.IsSupported)
        || (type is GgufTensorType.Q4_0 or GgufTensorType.Q4_1 && path >= KernelPath.Avx2);

    struct MatMulJob
    {
        public byte* W;
        public long RowBytes;
        public int Rows, Columns, N, ChunkRows;
        public Q8Row* Acts;
        public float* Y;
        public delegate*<byte*, Q8Row*, int, float> Dot;
        /// <summary>All N activation rows against one weight row at once (weight vectors read once for several rows), or null.</summary>
        public delegate*<byte*, Q8Row*, int, int, float*, long, void> ManyRows;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MatMulChunk(void* state, int chunk)
    {
        var job = (MatMulJob*)state;
        int start = chunk * job->ChunkRows, end = Math.Min(job->Rows, start + job->ChunkRows);
        for (int r = start; r < end; r++)
        {
            byte* row = job->W + r * job->RowBytes;
            if (job->ManyRows != null) job->ManyRows(row, job->Acts, job->N, job->Columns, job->Y + r, job->Rows);
            else for (int i = 0; i < job->N; i++) job->Y[(long)i * job->Rows + r] = job->Dot(row, job->Acts + i, job->Columns);
        }
    }

    /// <summary>
    /// The multi-row kernels (float weights on AVX2 and AVX-512, F16 on AVX-512 having its own one-row loop; the block
    /// types, whose blocks are unpacked once for two rows, or four for the K-quants and the Q4 pairs): each row of the
    /// result equals its one-row product bit for bit, so a row's logits do not depend on the batch it decodes in.
    /// </summary>
    static delegate*<byte*, Q8Row*, int, int, float*, long, void> ManyRows(GgufTensorType type, KernelPath path) => (type, path) switch
    {
        (GgufTensorType.F32, KernelPath.Avx512) => &FloatDots.F32RowsAvx512,
        (GgufTensorType.BF16, KernelPath.Avx512) => &FloatDots.BF16RowsAvx512,
        (GgufTensorType.F16, KernelPath.Avx512) => &FloatDots.F16RowsAvx512,
        (GgufTensorType.F32, KernelPath.Avx2) => &FloatDots.F32RowsAvx2,
        (GgufTensorType.BF16, KernelPath.Avx2) => &FloatDots.BF16RowsAvx2,
        (GgufTensorType.F16, KernelPath.Avx2) => &FloatDots.F16RowsAvx2,
        // The K-quants with mins run their 256-bit kernels on both paths (Dot(type, Avx512) falls back to Avx2Dots).
        (GgufTensorType.Q4_K, KernelPath.Avx2 or KernelPath.Avx512) => &Avx2Dots.Q4_KRows,
        (GgufTensorType.Q5_K, KernelPath.Avx2 or KernelPath.Avx512) => &Avx2Dots.Q5_KRows,
        (GgufTensorType.Q6_K, KernelPath.Avx2 or KernelPath.Avx512) => &Avx2Dots.Q6_KRows,
        // The 32-blocks where the path computes them with the 256-bit kernels (Q8_0 always; the nibble types on AVX2, and
        // on AVX-512 where NarrowNibbles chose them, which the caller says by asking for Avx2): Q4_0 and Q4_1 two blocks
        // a vector (Avx2NibbleDots), the others one.
        (GgufTensorType.Q8_0, KernelPath.Avx2 or KernelPath.Avx512) => &Avx2Dots.Q8_0Rows,
        (GgufTensorType.Q4_0, KernelPath.Avx2) => &Avx2NibbleDots.Q4_0Rows,
        (GgufTensorType.Q4_1, KernelPath.Avx2) => &Avx2NibbleDots.Q4_1Rows,
        (GgufTensorType.Q5_0, KernelPath.Avx2) => &Avx2Dots.Q5_0Rows,
        (GgufTensorType.Q5_1, KernelPath.Avx2) => &Avx2Dots.Q5_1Rows,
        _ => null,
    };

    static delegate*<byte*, Q8Row*, int, float> Dot(GgufTensorType type, KernelPath path) => path switch
    {
        KernelPath.Portable => type switch
        {
            GgufTensorType.F32 => &PortableDots.F32,
            GgufTensorType.F16 => &PortableDots.F16,
            GgufTensorType.BF16 => &PortableDots.BF16,
            GgufTensorType.Q8_0 => &PortableDots.Q8_0,
            GgufTensorType.Q4_0 => &PortableDots.Q4_0,
            GgufTensorType.Q4_1 => &PortableDots.Q4_1,
            GgufTensorType.Q5_0 => &PortableDots.Q5_0,
            GgufTensorType.Q5_1 => &PortableDots.Q5_1,
            GgufTensorType.Q4_K => &PortableDots.Q4_K,
            GgufTensorType.Q5_K => &PortableDots.Q5_K,
            GgufTensorType.Q6_K => &PortableDots.Q6_K,
            _ => throw new NotSupportedException($"no kernel for {type}"),
        },
        KernelPath.Avx2 => type switch
        {
            GgufTensorType.F32 => &FloatDots.F32Avx2,
            GgufTensorType.F16 => &FloatDots.F16Avx2,
            GgufTensorType.BF16 => &FloatDots.BF16Avx2,
            GgufTensorType.Q8_0 => &Avx2Dots.Q8_0,
            GgufTensorType.Q4_0 => &Avx2NibbleDots.Q4_0,
            GgufTensorType.Q4_1 => &Avx2NibbleDots.Q4_1,
            GgufTensorType.Q5_0 => &Avx2Dots.Q5_0,
            GgufTensorType.Q5_1 => &Avx2Dots.Q5_1,
            GgufTensorType.Q4_K => &Avx2Dots.Q4_K,
            GgufTensorType.Q5_K => &Avx2Dots.Q5_K,
            GgufTensorType.Q6_K => &Avx2Dots.Q6_K,
            _ => Dot(type, KernelPath.Portable),
        },
        // AVX-512 kernels where 512 bits pay; the AVX2 ones (which run on AVX-512 machines) elsewhere.
        _ => type switch
        {
            GgufTensorType.F32 => &FloatDots.F32Avx512,
            GgufTensorType.F16 => &FloatDots.F16Avx512,
            GgufTensorType.BF16 => &FloatDots.BF16Avx512,
            GgufTensorType.Q4_0 when Avx512Dots.IsSupported => &Avx512Dots.Q4_0,
            GgufTensorType.Q4_1 when Avx512Dots.IsSupported => &Avx512Dots.Q4_1,
            GgufTensorType.Q5_0 when Avx512Dots.IsSupported => &Avx512Dots.Q5_0,
            GgufTensorType.Q5_1 when Avx512Dots.IsSupported => &Avx512Dots.Q5_1,
            _ => Dot(type, KernelPath.Avx2),
        },
    };

    /// <summary>Rows [first, first + count) dequantized to fp32, (count, Columns) at dst, exactly as ggml's dequantize_row_*.</summary>
    /// <param name="callerOnly">On the calling thread alone (see <see cref="KernelThreadPool.Run"/>); else over the kernel threads.</param>
    public static void DequantizeRows(QuantizedMatrix w, int first, int count, float* dst, bool callerOnly = false) =>
        Dequantize(w, first, count, dst, bf16: false, callerOnly);

    /// <summary>The same to bf16 bits (fp32 rounded to nearest even, as torch's fp32 → bf16).</summary>
    public static void DequantizeRows(QuantizedMatrix w, int first, int count, ushort* dstBf16, bool callerOnly = false) =>
        Dequantize(w, first, count, dstBf16, bf16: true, callerOnly);

    static void Dequantize(QuantizedMatrix w, int first, int count, void* dst, bool bf16, bool callerOnly)
    {
        if (first < 0 || count < 0 || first > w.Rows - count)
            throw new ArgumentOutOfRangeException(nameof(count), $"rows [{first}, {first}+{count}) of a matrix with {w.Rows} rows");
        var job = new DequantizeJob { Matrix = w.Data + first * w.RowBytes, RowBytes = w.RowBytes, Columns = w.Columns, Type = w.Type, Dst = dst, Bf16 = bf16 };
        KernelThreadPool.Shared.Run(count, &DequantizeRow, &job, callerOnly);
    }

    struct DequantizeJob
    {
        public byte* Matrix;
        public long RowBytes;
        public int Columns;
        public GgufTensorType Type;
        public void* Dst;
        public bool Bf16;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void DequantizeRow(void* state, int row)
    {
        var job = (DequantizeJob*)state;
        var blocks = new ReadOnlySpan<byte>(job->Matrix + row * job->RowBytes, (int)job->RowBytes);
        if (!job->Bf16)
        {
            BlockDecoders.Row(job->Type, blocks, (float*)job->Dst + (long)row * job->Columns, job->Columns);
            return;
        }
        float* values = Bf16.RowScratch(job->Columns);
        BlockDecoders.Row(job->Type, blocks, values, job->Columns);
        Bf16.FromSingle(values, (ushort*)job->Dst + (long)row * job->Columns, job->Columns);
    }

    /// <summary>
    /// fp32 values → blocks of <paramref name="type"/>, as llama.cpp's reference quantizers (quantize_row_*_ref; for the
    /// K-quants the ones without an importance matrix), so the bytes equal llama.cpp's for the same input.
    /// </summary>
    public static void Quantize(GgufTensorType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        int block = GgufTensorTypes.BlockSize(type);
        long bytes = QuantizedMatrix.RowBytesOf(type, block) * (src.Length / block);
        if (src.Length % block != 0 || dst.Length != bytes)
            throw new ArgumentException($"{type} quantizes whole blocks of {block}: {src.Length} values into {dst.Length} bytes (expected {bytes})");
        switch (type)
        {
            case GgufTensorType.F32: System.Runtime.InteropServices.MemoryMarshal.AsBytes(src).CopyTo(dst); break;
            case GgufTensorType.F16:
                var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(dst);
                for (int i = 0; i < src.Length; i++) halves[i] = (Half)src[i];
                break;
            case GgufTensorType.BF16:
                fixed (float* s = src)
                fixed (byte* d = dst)
                    Bf16.FromSingle(s, (ushort*)d, src.Length);
                break;
            case GgufTensorType.Q8_0: BlockQuantizers.Q8_0(src, dst); break;
            case GgufTensorType.Q4_0: BlockQuantizers.Q4_0(src, dst); break;
            case GgufTensorType.Q4_1: BlockQuantizers.Q4_1(src, dst); break;
            case GgufTensorType.Q5_0: BlockQuantizers.Q5_0(src, dst); break;
            case GgufTensorType.Q5_1: BlockQuantizers.Q5_1(src, dst); break;
            case GgufTensorType.Q4_K: KQuantizers.Q4_K(src, dst); break;
            case GgufTensorType.Q5_K: KQuantizers.Q5_K(src, dst); break;
            case GgufTensorType.Q6_K: KQuantizers.Q6_K(src, dst); break;
            default: throw new NotSupportedException($"no quantizer for {type}");
        }
    }
}
