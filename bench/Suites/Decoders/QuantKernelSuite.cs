using System.Buffers.Binary;
using System.Diagnostics;
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

    static readonly GgufTensorType[] Types =
    [
        GgufTensorType.F32, GgufTensorType.F16, GgufTensorType.BF16, GgufTensorType.Q8_0, GgufTensorType.Q4_0, GgufTensorType.Q4_1,
        GgufTensorType.Q5_0, GgufTensorType.Q5_1, GgufTensorType.Q4_K, GgufTensorType.Q5_K, GgufTensorType.Q6_K,
    ];

    public BenchResult Run(BenchContext context)
    {
        var clock = Stopwatch.StartNew();
        var paths = Enum.GetValues<KernelPath>().Where(p => p <= QuantizedKernels.Supported).Reverse().ToArray();
        var shapes = context.Quick ? Shapes[..4] : Shapes;
        var metrics = new OrderedDictionary<string, double>();
        var random = new Random(7);
        Console.WriteLine($"threads {QuantizedKernels.Threads}, paths {string.Join(", ", paths)} (default {QuantizedKernels.Path}); best of repeated calls");
        foreach (var type in Types)
        {
            var tokenMs = new double[paths.Length];
            foreach (var (shapeName, rows, columns, perToken) in shapes)
            {
                var used = columns % GgufTensorTypes.BlockSize(type) == 0 ? type
                    : type == GgufTensorType.Q6_K ? GgufTensorType.Q8_0 : GgufTensorType.Q5_0;
                using var w = QuantizedMatrix.Copy(used, rows, columns, RandomBlocks(used, rows, columns, random));
                var x = new float[columns];
                for (int c = 0; c < columns; c++) x[c] = (float)(random.NextDouble() * 2 - 1);
                var y = new float[rows];
                var line = new List<string>();
                for (int p = 0; p < paths.Length; p++)
                {
                    var path = paths[p];
                    if (path == KernelPath.Portable && rows > 10000) { line.Add($"{path}: skipped"); continue; }
                    double seconds = Best(() =>
                    {
                        fixed (float* px = x, py = y) QuantizedKernels.MatMul(w, px, 1, py, path);
                    });
                    double gbs = w.ByteSize / seconds / 1e9;
                    tokenMs[p] += perToken * seconds * 1e3;
                    string key = $"{type}_{path}_{rows}x{columns}".ToLowerInvariant();
                    metrics[$"{key}_us"] = seconds * 1e6;
                    metrics[$"{key}_gb_s"] = gbs;
                    line.Add($"{path}: {seconds * 1e6,8:F1} us {gbs,6:F1} GB/s");
                }
                Console.WriteLine($"{type,-5} {shapeName,-18}{(used != type ? $" (as {used})" : ""),-10} {string.Join(" | ", line)}");
            }
            for (int p = 0; p < paths.Length; p++)
            {
                if (paths[p] == KernelPath.Portable && !context.Quick) continue; // the head was skipped
                metrics[$"{type}_{paths[p]}_token_ms".ToLowerInvariant()] = tokenMs[p];
                Console.WriteLine($"{type,-5} {paths[p]}: one token's products {tokenMs[p]:F2} ms ({1000 / tokenMs[p]:F1} tokens/s if products were all)");
            }
        }
        return new BenchResult
        {
            Suite = Name,
            Model = "random blocks at Qwen2.5-0.5B's products; token = 24 layers x (q, k, v, o, gate, up, down) + head",
            Dataset = "none",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = 0,
            TrainSeconds = 0,
            PredictSeconds = clock.Elapsed.TotalSeconds,
            Metrics = metrics,
        };
    }

    // Best of repeated calls for at least 0.3 s (after a warm-up call).
    static double Best(Action action)
    {
        action();
        double best = double.MaxValue, spent = 0;
        for (int i = 0; i < 3 || spent < 0.3; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            double s = Stopwatch.GetElapsedTime(start).TotalSeconds;
            best = Math.Min(best, s);
            spent += s;
        }
        return best;
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
