using System.Diagnostics;
using SharpTune.Bench.Reporting;
using SharpTune.Models.Decoders;
using SharpTune.Models.Quantized;
using SharpTune.Native;
using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// Where a 512-token prompt's time goes on stored weights (decoder-speed's Q4_K_M file unless SHARPTUNE_BENCH_VARIANTS
/// names another key): the whole Forward, the last position's (as a prompt is computed) with fp32 and with bf16 tiles,
/// then every stored product at 512 rows (QuantizedOps.Linear: tiles dequantized, then GEMM) in both tile dtypes, with
/// and without the activations' rounding, the rounding and the dequantization alone, the head's products apart, against
/// the same products on the dequantized weight in fp32 and bf16 (one <c>linear</c>: what a dense model pays). Wall and
/// CPU seconds, best of a few (the machine is shared).
/// </summary>
public sealed class StoredPromptProfileSuite : IBenchSuite
{
    const int Tokens = 512, Threads = 2;

    public string Name => "decoder-prompt-profile";

    public string Description => "per-op profile of a 512-token prompt on stored weights (decoder-speed's files)";

    public BenchResult Run(BenchContext context)
    {
        var mkl = MklDispatch.Ensure();
        set_num_threads(Threads);
        var shape = context.Quick ? Qwen2Shape.Quick : Qwen2Shape.Qwen25_05B;
        string key = Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_VARIANTS") is { Length: > 0 } k ? k.Split(',')[0] : "q4_k_m";
        string path = DecoderSpeedSuite.EnsureFiles(shape, RandomQwen2Gguf.Folder(context.Quick))[key];
        Console.WriteLine($"CPU {mkl.Cpu}; tiles {QuantizedOps.DefaultTileDtype}; {Threads} threads; load {DecoderSpeedSuite.Load()}; {path}");
        using var lm = LanguageModel.Load(path, WeightStorage.AsStored);
        var model = lm.Model;
        model.Module.eval();
        using var ids = randint(3, shape.Vocab, [1, Tokens], dtype: ScalarType.Int64);
        var metrics = new OrderedDictionary<string, double>();
        void Time(string name, Action action, int repeats = 2)
        {
            using var self = Process.GetCurrentProcess();
            action();
            double wall = double.MaxValue, cpu = double.MaxValue;
            for (int i = 0; i < repeats; i++)
            {
                self.Refresh();
                var c = self.TotalProcessorTime;
                var clock = Stopwatch.StartNew();
                action();
                wall = Math.Min(wall, clock.Elapsed.TotalSeconds);
                self.Refresh();
                cpu = Math.Min(cpu, (self.TotalProcessorTime - c).TotalSeconds);
            }
            metrics[$"{name}_seconds"] = wall;
            metrics[$"{name}_cpu_seconds"] = cpu;
            Console.WriteLine($"  {name}: {wall:F2} s, {cpu:F2} CPU s (load {DecoderSpeedSuite.Load()})");
        }
        using var mode = inference_mode();
        Time("forward", () => { using var scope = NewDisposeScope(); model.Forward(ids); });
        foreach (var tiles in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var precision = QuantizedOps.UseTileDtype(tiles);
            Time($"forward_last_{(tiles == ScalarType.Float32 ? "fp32" : "bf16")}_tiles", () => { using var scope = NewDisposeScope(); model.ForwardLast(ids); });
        }

        var layers = model.Module.modules().OfType<StoredLinear>().Select(l => l.Weight).ToList();
        var head = model is ILanguageModelHead { StoredHead: { } h } ? h : null;
        var types = layers.GroupBy(w => w.Type).Select(g => $"{g.Count()} {g.Key}");
        Console.WriteLine($"  {layers.Count} stored layer matrices ({string.Join(", ", types)}){(head is null ? "" : $"; head {head.Type} {head.Rows} x {head.Columns}")}");
        var rows = layers.Select(w => w.Columns).Distinct().ToDictionary(c => c, c => randn(Tokens, c));
        void Products(string name, ScalarType tiles, bool round)
        {
            using var precision = QuantizedOps.UseTileDtype(tiles);
            Time(name, () => { using var scope = NewDisposeScope(); foreach (var w in layers) QuantizedOps.Linear(rows[w.Columns], w, null, roundActivations: round); });
        }
        Products("layer_products_stored_fp32_tiles", ScalarType.Float32, round: true);
        Products("layer_products_stored_bf16_tiles", ScalarType.BFloat16, round: true);
        Products("layer_products_stored_bf16_tiles_unrounded", ScalarType.BFloat16, round: false);
        Time("layer_dequantize_bf16", () =>
        {
            using var tile = empty(layers.Max(w => (long)w.Rows * w.Columns), ScalarType.BFloat16);
            unsafe
            {
                fixed (byte* p = tile.bytes)
                    foreach (var w in layers) QuantizedKernels.DequantizeRows(w, 0, w.Rows, (ushort*)p);
            }
        });
        Time("layer_activation_rounding", () => { using var scope = NewDisposeScope(); foreach (var w in layers) ActivationRounding.Apply(rows[w.Columns], w.Type); });
        var rowsBf16 = rows.ToDictionary(p => p.Key, p => p.Value.to(ScalarType.BFloat16));
        // The same products on dense fp32 weights: dequantized once here, one matrix at a time.
        double denseWall = 0, denseCpu = 0, dequantize = 0, bf16Wall = 0, bf16Cpu = 0;
        foreach (var w in layers)
        {
            var clock = Stopwatch.StartNew();
            using var dense = QuantizedOps.Dequantize(w);
            dequantize += clock.Elapsed.TotalSeconds;
            using var self = Process.GetCurrentProcess();
            var x = rows[w.Columns];
            nn.functional.linear(x, dense).Dispose();
            self.Refresh();
            var c = self.TotalProcessorTime;
            clock.Restart();
            nn.functional.linear(x, dense).Dispose();
            denseWall += clock.Elapsed.TotalSeconds;
            self.Refresh();
            denseCpu += (self.TotalProcessorTime - c).TotalSeconds;
            using var denseBf16 = dense.to(ScalarType.BFloat16);
            var xb = rowsBf16[w.Columns];
            nn.functional.linear(xb, denseBf16).Dispose();
            self.Refresh();
            c = self.TotalProcessorTime;
            clock.Restart();
            nn.functional.linear(xb, denseBf16).Dispose();
            bf16Wall += clock.Elapsed.TotalSeconds;
            self.Refresh();
            bf16Cpu += (self.TotalProcessorTime - c).TotalSeconds;
        }
        metrics["layer_products_dense_bf16_seconds"] = bf16Wall;
        metrics["layer_products_dense_bf16_cpu_seconds"] = bf16Cpu;
        Console.WriteLine($"  layer_products_dense_bf16: {bf16Wall:F2} s, {bf16Cpu:F2} CPU s");
        metrics["layer_products_dense_fp32_seconds"] = denseWall;
        metrics["layer_products_dense_fp32_cpu_seconds"] = denseCpu;
        metrics["layer_dequantize_whole_seconds"] = dequantize;
        Console.WriteLine($"  layer_products_dense_fp32: {denseWall:F2} s, {denseCpu:F2} CPU s; dequantizing every layer matrix whole {dequantize:F2} s");
        if (head is not null)
        {
            using var x = randn(Tokens, head.Columns);
            Time("head_product_stored", () => { using var scope = NewDisposeScope(); QuantizedOps.Linear(x, head, null, roundActivations: true); }, 1);
            using var dense = QuantizedOps.Dequantize(head);
            Time("head_product_dense_fp32", () => { using var scope = NewDisposeScope(); nn.functional.linear(x, dense); }, 1);
            Time("head_dequantize_whole", () => QuantizedOps.Dequantize(head).Dispose(), 1);
        }
        foreach (var t in rows.Values.Concat(rowsBf16.Values)) t.Dispose();
        return new BenchResult
        {
            Suite = Name,
            Model = $"qwen2 with {shape.Name}, {path} stored; default tiles {QuantizedOps.DefaultTileDtype}; {Threads} threads; CPU {mkl.Cpu}; load {DecoderSpeedSuite.Load()}",
            Dataset = $"{Tokens} random token ids, batch 1",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = 0,
            TrainSeconds = 0,
            PredictSeconds = 0,
            Metrics = metrics,
        };
    }
}
