using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using SharpTune.Bench.Reporting;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Quantization;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// Batch-1 products on blocks (<see cref="QuantizedKernels.MatMul(QuantizedMatrix, float*, int, float*)"/>) at
/// Qwen2.5-0.5B's shapes, for every type and every instruction path this CPU runs: the time per product, the weight
/// bytes streamed per second, and the time of one token's products (24 layers of q, k, v, o, gate, up, down, and the
/// 151,936-row head). K-quant rows must be multiples of 256, which 896 is not: as llama.cpp does for this model, those
/// products fall back to Q5_0 (Q4_K, Q5_K) or Q8_0 (Q6_K); the fallback is named in the output.
/// On a shared machine wall-clock times of threaded products mostly measure the scheduler, so each product is also
/// timed on one thread by that thread's CPU time (CLOCK_THREAD_CPUTIME_ID): the per-core figure a quiet machine
/// would show, and the token time for the configured threads estimated from it (per-core time / threads).
/// Knobs: SHARPTUNE_BENCH_TYPES=Q4_0,Q4_K and SHARPTUNE_BENCH_PATHS=avx512,avx2 narrow the run; SHARPTUNE_BENCH_SHAPES=7b
/// times Qwen2.5-7B's products instead; SHARPTUNE_BENCH_ACT_ROWS=8 multiplies that many activation rows a call (a short
/// prompt's products, where the kernels compute rather than stream).
/// </summary>
public sealed unsafe class QuantKernelSuite : IBenchSuite
{
    public string Name => "quant-kernels";

    public string Description => "batch-1 block products (MatMul) per type and instruction path at Qwen2.5-0.5B shapes: GB/s and ms per token";

    // (name, rows = out features, columns = in features, products per token)
    static readonly (string Name, int Rows, int Columns, int PerToken)[] Shapes =
    [
        ("q,o 896x896", 896, 896, 48), ("k,v 128x896", 128, 896, 48), ("gate,up 4864x896", 4864, 896, 48),
        ("down 896x4864", 896, 4864, 24), ("head 151936x896", 151936, 896, 1),
    ];

    // The same at Qwen2.5-7B's shapes (SHARPTUNE_BENCH_SHAPES=7b): 28 layers, hidden 3584, MLP 18944, 4 key/value heads.
    static readonly (string Name, int Rows, int Columns, int PerToken)[] Shapes7b =
    [
        ("q,o 3584x3584", 3584, 3584, 56), ("k,v 512x3584", 512, 3584, 56), ("gate,up 18944x3584", 18944, 3584, 56),
        ("down 3584x18944", 3584, 18944, 28), ("head 152064x3584", 152064, 3584, 1),
    ];

    /// <summary>Twice this machine's 32 MiB L3 and more.</summary>
    const long CacheBytes = 96L << 20;

    static readonly GgufTensorType[] Types =
    [
        GgufTensorType.F32, GgufTensorType.F16, GgufTensorType.BF16, GgufTensorType.Q8_0, GgufTensorType.Q4_0, GgufTensorType.Q4_1,
        GgufTensorType.Q5_0, GgufTensorType.Q5_1, GgufTensorType.Q4_K, GgufTensorType.Q5_K, GgufTensorType.Q6_K,
    ];

    public BenchResult Run(BenchContext context)
    {
        var clock = Stopwatch.StartNew();
        // SHARPTUNE_BENCH_PATHS=avx512,avx2 narrows the instruction paths timed.
        var onlyPaths = Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_PATHS")?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var paths = Enum.GetValues<KernelPath>().Where(p => p <= QuantizedKernels.Supported)
            .Where(p => onlyPaths is null || onlyPaths.Contains(p.ToString(), StringComparer.OrdinalIgnoreCase)).Reverse().ToArray();
        var all = Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_SHAPES") == "7b" ? Shapes7b : Shapes;
        var shapes = context.Quick ? all[..4] : all;
        // SHARPTUNE_BENCH_ACT_ROWS=8: products of that many activation rows (a short prompt's), each timed as one call.
        int n = int.TryParse(Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_ACT_ROWS"), out var asked) && asked > 0 ? asked : 1;
        var metrics = new OrderedDictionary<string, double>();
        var random = new Random(7);
        Console.WriteLine($"{n} activation row(s); threads {QuantizedKernels.Threads}, paths {string.Join(", ", paths)} (default {QuantizedKernels.Path}); best of repeated calls");
        // SHARPTUNE_BENCH_TYPES=Q4_0,Q4_K narrows the run to those types.
        var only = Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_TYPES")?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        foreach (var type in Types.Where(t => only is null || only.Contains(t.ToString(), StringComparer.OrdinalIgnoreCase)))
        {
            var tokenMs = new double[paths.Length];
            var coreTokenMs = new double[paths.Length];
            foreach (var (shapeName, rows, columns, perToken) in shapes)
            {
                var used = columns % GgufTensorTypes.BlockSize(type) == 0 ? type
                    : type == GgufTensorType.Q6_K ? GgufTensorType.Q8_0 : GgufTensorType.Q5_0;
                // Copies enough to exceed the last-level cache, called in turn: a token streams its weights from memory,
                // and so does each timed call here.
                byte[] blocks = RandomBlocks(used, rows, columns, random);
                var copies = Enumerable.Range(0, (int)Math.Clamp(CacheBytes / blocks.Length + 1, 1, 4096))
                    .Select(_ => QuantizedMatrix.Copy(used, rows, columns, blocks)).ToArray();
                var w = copies[0];
                int next = 0;
                var x = new float[n * columns];
                for (int c = 0; c < x.Length; c++) x[c] = (float)(random.NextDouble() * 2 - 1);
                var y = new float[(long)n * rows];
                var line = new List<string>();
                for (int p = 0; p < paths.Length; p++)
                {
                    var path = paths[p];
                    if (path == KernelPath.Portable && rows > 10000) { line.Add($"{path}: skipped"); continue; }
                    void Product()
                    {
                        fixed (float* px = x, py = y) QuantizedKernels.MatMul(copies[next++ % copies.Length], px, n, py, path);
                    }
                    double seconds = Best(Product, ThreadSeconds: false);
                    int threads = QuantizedKernels.Threads;
                    QuantizedKernels.Threads = 1;
                    double core = Best(Product, ThreadSeconds: true);
                    QuantizedKernels.Threads = threads;
                    tokenMs[p] += perToken * seconds * 1e3;
                    coreTokenMs[p] += perToken * core * 1e3;
                    // Recorded: one core's streaming rate per shape (the console has every figure).
                    metrics[$"{type}_{path}_{rows}x{columns}_one_core_gb_s".ToLowerInvariant()] = w.ByteSize / core / 1e9;
                    line.Add($"{path}: {seconds * 1e6,8:F1} us {w.ByteSize / seconds / 1e9,5:F1} GB/s, 1 core {core * 1e6,8:F1} us {w.ByteSize / core / 1e9,5:F1} GB/s");
                }
                foreach (var copy in copies) copy.Dispose();
                Console.WriteLine($"{type,-5} {shapeName,-18}{(used != type ? $" (as {used})" : ""),-10} {string.Join(" | ", line)}");
            }
            for (int p = 0; p < paths.Length; p++)
            {
                if (paths[p] == KernelPath.Portable && !context.Quick) continue; // the head was skipped
                double estimate = coreTokenMs[p] / QuantizedKernels.Threads;
                metrics[$"{type}_{paths[p]}_token_ms".ToLowerInvariant()] = tokenMs[p];
                metrics[$"{type}_{paths[p]}_one_core_token_ms".ToLowerInvariant()] = coreTokenMs[p];
                Console.WriteLine($"{type,-5} {paths[p]}: one token's products {tokenMs[p]:F2} ms wall; one core {coreTokenMs[p]:F2} ms CPU, " +
                                  $"so {estimate:F2} ms on {QuantizedKernels.Threads} threads ({1000 / estimate:F1} tokens/s if products were all)");
            }
        }
        return new BenchResult
        {
            Suite = Name,
            Model = "MatMul at batch 1 on Qwen2.5-0.5B's products; token = 24 layers x (q, k, v, o, gate, up, down) + the head; " +
                    "one-core figures are CPU time on one thread, token estimates divide them by the threads",
            Dataset = "random blocks, in copies beyond the L3 so that weights stream from memory",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = 0,
            TrainSeconds = 0,
            PredictSeconds = clock.Elapsed.TotalSeconds,
            Metrics = metrics,
        };
    }

    // Best wall time of repeated calls for at least 0.3 s (after a warm-up call); or, by this thread's CPU time, the
    // mean over those calls (the CPU clock is not preempted, and its mean is immune to the clock's granularity).
    static double Best(Action action, bool ThreadSeconds)
    {
        action();
        double best = double.MaxValue, spent = 0, cpuStart = ThreadCpuSeconds();
        int calls = 0;
        for (; calls < 3 || spent < 0.3; calls++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            double s = Stopwatch.GetElapsedTime(start).TotalSeconds;
            best = Math.Min(best, s);
            spent += s;
        }
        return ThreadSeconds ? (ThreadCpuSeconds() - cpuStart) / calls : best;
    }

    [StructLayout(LayoutKind.Sequential)]
    struct TimeSpec
    {
        public long Seconds, Nanoseconds;
    }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    static extern int ClockGetTime(int clock, out TimeSpec time);

    static double ThreadCpuSeconds()
    {
        const int ClockThreadCpuTime = 3;
        if (ClockGetTime(ClockThreadCpuTime, out var t) != 0) throw new InvalidOperationException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        return t.Seconds + t.Nanoseconds * 1e-9;
    }

    // Random bytes with finite fp16/bf16/fp32 values where the type keeps floats (no NaN or subnormal slow paths).
    static byte[] RandomBlocks(GgufTensorType type, int rows, int columns, Random random)
    {
        int blockBytes = GgufTensorTypes.BlockBytes(type), blocks = rows * (columns / GgufTensorTypes.BlockSize(type));
        var bytes = new byte[(long)blocks * blockBytes];
        random.NextBytes(bytes);
        void Half(long at) => BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan((int)at), BitConverter.HalfToUInt16Bits((Half)(random.NextDouble() * 0.1 - 0.05)));
        for (long b = 0; b < blocks; b++)
        {
            long o = b * blockBytes;
            switch (type)
            {
                case GgufTensorType.F32: BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)o), (float)(random.NextDouble() - 0.5)); break;
                case GgufTensorType.F16: Half(o); break;
                case GgufTensorType.BF16: BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan((int)o), (ushort)(BitConverter.SingleToUInt32Bits((float)(random.NextDouble() - 0.5)) >> 16)); break;
                case GgufTensorType.Q6_K: Half(o + 208); break;
                case GgufTensorType.Q4_1 or GgufTensorType.Q5_1 or GgufTensorType.Q4_K or GgufTensorType.Q5_K: Half(o); Half(o + 2); break;
                default: Half(o); break;
            }
        }
        return bytes;
    }
}
