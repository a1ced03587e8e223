using System.Diagnostics;
using SharpTune.Bench.Reporting;
using SharpTune.Native;
using SharpTune.Tests.Oracle;
using TorchSharp;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// A Qwen2.5-7B-shaped Q4_K_M file (<see cref="RandomQ4KmGguf"/>: random blocks in Q4_K_M's mix of types, 4.7 GB)
/// under SharpTune's stored weights and llama.cpp: generation of 16 greedy tokens after 8 (SharpTune in its own process,
/// <see cref="Decoder7bGenerateSuite"/>, for its peak resident set; llama.cpp in this one; in turns), then a LoRA step of
/// 1 x 256 tokens with checkpointed layers over the stored base in its own process (one step: the 7B is slow on two
/// cores), its FLOP/s against libtorch's bf16 product at the 7B's MLP shape. Goals: generation peak &lt; 6 GiB at
/// &gt;= 1.0x llama.cpp's tokens/s; the LoRA step's peak &lt; 9 GiB. The file is deleted at the end
/// (SHARPTUNE_BENCH_KEEP_FILES=1 keeps it).
/// </summary>
public sealed class Decoder7bSuite : IBenchSuite
{
    const int Threads = 2, Generated = 16, ShortPrompt = 8;
    const double GenerationPeakGoalMb = 6.0 * 1024 * 1024 * 1024 / 1e6, LoraPeakGoalMb = 9.0 * 1024 * 1024 * 1024 / 1e6;

    public static Qwen2Shape Shape(bool quick) => quick ? Qwen2Shape.Quick7B : Qwen2Shape.Qwen25_7B;

    public static string Folder(bool quick) => Path.Combine(Path.GetTempPath(), "sharptune-decoder-7b", quick ? "quick" : "full");

    /// <summary>The file, written unless it exists.</summary>
    public static string File(bool quick) => RandomQ4KmGguf.Write(Shape(quick), Path.Combine(Folder(quick), "model-q4_k_m.gguf"));

    /// <summary>The LoRA step's configuration (a child of this suite, registered with decoder-memory's).</summary>
    public static DecoderStepConfig Lora { get; } = new("7b-q4km-stored-lora", "LoRA r8 over a Qwen2.5-7B-shaped Q4_K_M base kept stored, checkpointed layers, chunked loss",
        Lora: true, Bf16Base: false, Checkpointing: true, ChunkedLoss: true, NeedsGigabytes: 9, Gguf: new GgufBase(File, Shape, Stored: true), Batch: 1, Length: 256, Steps: 1);

    public string Name => "decoder-7b";

    public string Description => "Qwen2.5-7B-shaped Q4_K_M file (random blocks): generation peak memory and speed vs llama.cpp, a LoRA step over it stored";

    public BenchResult Run(BenchContext context)
    {
        var mkl = MklDispatch.Ensure();
        torch.set_num_threads(Threads);
        var shape = Shape(context.Quick);
        var clock = Stopwatch.StartNew();
        var metrics = new OrderedDictionary<string, double>();
        var notes = new List<string>();
        Directory.CreateDirectory(Folder(context.Quick));
        double freeGb = new DriveInfo(Folder(context.Quick)).AvailableFreeSpace / 1e9;
        Console.WriteLine($"CPU {mkl.Cpu}; {Threads} threads; load {DecoderSpeedSuite.Load()}; {freeGb:F0} GB free under {Folder(context.Quick)}");
        if (!System.IO.File.Exists(Path.Combine(Folder(context.Quick), "model-q4_k_m.gguf")) && freeGb < (context.Quick ? 1 : 8))
            throw new IOException($"{Folder(context.Quick)}: {freeGb:F1} GB free, the 7B file needs about 5 GB (and some room left for others)");
        string path = File(context.Quick);
        double fileMb = new FileInfo(path).Length / 1e6;
        metrics["file_mb"] = fileMb;
        Console.WriteLine($"{path}: {fileMb:F0} MB ({shape.Name}, {shape.Parameters:N0} parameters), ready in {clock.Elapsed.TotalSeconds:F0} s");

        // Generation, in turns: llama.cpp here, SharpTune in a child process (its own resident set).
        var random = new Random(17);
        var prompt = Enumerable.Range(0, ShortPrompt).Select(_ => random.Next(3, shape.Vocab)).ToList();
        var llamaTimes = new List<double>();
        var oursRates = new List<double>();
        var llamaCpu = new List<double>();
        var oursCpu = new List<double>();
        using (var llama = new LlamaCpp(path, contextSize: 256, threads: Threads))
        {
            llama.Greedy(prompt, 4);                                               // warm-up: pages read
            int rounds = context.Quick ? 1 : 2;
            for (int round = 0; round < rounds; round++)
            {
                using var self = Process.GetCurrentProcess();
                var cpu = self.TotalProcessorTime;
                var watch = Stopwatch.StartNew();
                llama.Greedy(prompt, Generated);
                llamaTimes.Add(watch.Elapsed.TotalSeconds);
                self.Refresh();
                llamaCpu.Add((self.TotalProcessorTime - cpu).TotalSeconds);
                Console.WriteLine($"  llama.cpp: {Generated / llamaTimes[^1]:F2} tokens/s, {llamaCpu[^1]:F1} CPU seconds (load {DecoderSpeedSuite.Load()})");
                Console.WriteLine($"\n-- {Decoder7bGenerateSuite.SuiteName} (round {round + 1})");
                var child = DecoderMemorySuite.RunChild(context, Decoder7bGenerateSuite.SuiteName);
                if (child is null) { notes.Add($"generation round {round + 1} failed (its output is above)"); continue; }
                foreach (var (key, value) in child) metrics[$"generate_{key}_round{round + 1}"] = value;
                oursRates.Add(child["generate_tokens_per_s"]);
                oursCpu.Add(child["generate_cpu_seconds"]);
            }
        }
        if (oursRates.Count > 0)
        {
            double llamaRate = Generated / DecoderSpeedSuite.Median(llamaTimes), ours = DecoderSpeedSuite.Median(oursRates);
            metrics["generate_sharptune_tokens_per_s"] = ours;
            metrics["generate_llamacpp_tokens_per_s"] = llamaRate;
            metrics["generate_ratio_vs_llamacpp"] = ours / llamaRate;
            metrics["generate_cpu_seconds_sharptune"] = DecoderSpeedSuite.Median(oursCpu);
            metrics["generate_cpu_seconds_llamacpp"] = DecoderSpeedSuite.Median(llamaCpu);
            metrics["generate_cpu_ratio_vs_llamacpp"] = DecoderSpeedSuite.Median(llamaCpu) / DecoderSpeedSuite.Median(oursCpu);
            metrics["generate_peak_resident_mb"] = Enumerable.Range(1, 2).Select(r => metrics.TryGetValue($"generate_peak_mb_round{r}", out double v) ? v : 0).Max();
        }

        // The LoRA step, alone (llama.cpp's context is gone).
        double ceiling = MatmulCeiling.Flops(256, shape.Hidden, shape.Intermediate, torch.ScalarType.BFloat16, 3);
        metrics["bf16_ceiling_flops_per_s"] = ceiling;
        Console.WriteLine($"\nlibtorch's bf16 product (256 x {shape.Hidden}) x ({shape.Hidden} x {shape.Intermediate}): {ceiling / 1e9:F0} GFLOP/s");
        double available = AvailableGigabytes();
        if (!context.Quick && available < Lora.NeedsGigabytes)
            notes.Add($"LoRA step skipped: it needs about {Lora.NeedsGigabytes} GB and {available:F1} GB were available");
        else
        {
            Console.WriteLine($"\n-- {DecoderTrainingStepSuite.Prefix}{Lora.Key} (load {DecoderSpeedSuite.Load()})");
            var child = DecoderMemorySuite.RunChild(context, DecoderTrainingStepSuite.Prefix + Lora.Key);
            if (child is null) notes.Add("the LoRA step failed (its output is above)");
            else
            {
                foreach (var (key, value) in child) metrics[$"lora_{key}"] = value;
                if (child.TryGetValue("flops_per_s", out double rate)) metrics["lora_flops_over_bf16_ceiling"] = rate / ceiling;
            }
        }

        Console.WriteLine($"\ngoals ({mkl.Cpu}, load {DecoderSpeedSuite.Load()}):");
        string? Goal(string what, string key, Func<double, bool> met, string format)
            => metrics.TryGetValue(key, out double v) ? $"  {what}: {v.ToString(format)}, {(met(v) ? "met" : "NOT met")}" : $"  {what}: not measured";
        Console.WriteLine(Goal($"generation peak resident < {GenerationPeakGoalMb:F0} MB (6 GiB)", "generate_peak_resident_mb", v => v < GenerationPeakGoalMb, "F0"));
        Console.WriteLine(Goal("generation >= 1.0x llama.cpp", "generate_ratio_vs_llamacpp", v => v >= 1.0, "F2"));
        Console.WriteLine(Goal($"LoRA 1 x 256 step peak resident < {LoraPeakGoalMb:F0} MB (9 GiB)", "lora_peak_resident_mb", v => v < LoraPeakGoalMb, "F0"));
        if (metrics.TryGetValue("lora_step_seconds", out double step))
            Console.WriteLine($"  LoRA step {step:F1} s, {metrics["lora_flops_per_s"] / 1e9:F1} GFLOP/s = {metrics["lora_flops_over_bf16_ceiling"]:P1} of the bf16 ceiling");
        foreach (var n in notes) Console.WriteLine("  note: " + n);

        if (!context.Quick && Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_KEEP_FILES") != "1")
        {
            Directory.Delete(Folder(context.Quick), recursive: true);
            Console.WriteLine($"deleted {Folder(context.Quick)}");
        }
        return new BenchResult
        {
            Suite = Name,
            Model = $"qwen2 with {shape.Name} ({shape.Parameters:N0} parameters), random Q4_K_M blocks, {fileMb:F0} MB; {Threads} threads; CPU {mkl.Cpu}; " +
                    $"llama.cpp through LLamaSharp, F32 K/V cache; load at the end {DecoderSpeedSuite.Load()}" + (notes.Count > 0 ? "; " + string.Join("; ", notes) : ""),
            Dataset = $"{Generated} greedy tokens after {ShortPrompt} random ones; LoRA: random token ids, 1 x 256, one step",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = 0,
            TrainSeconds = clock.Elapsed.TotalSeconds,
            PredictSeconds = 0,
            Metrics = metrics,
        };
    }

    static double AvailableGigabytes()
    {
        foreach (var line in System.IO.File.ReadLines("/proc/meminfo"))
            if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                return long.Parse(line["MemAvailable:".Length..].Trim().Split(' ')[0]) * 1024 / 1e9;
        return double.PositiveInfinity;
    }
}

/// <summary>One process of decoder-7b: the 7B file loaded stored, 16 greedy tokens generated; resident sets and tokens/s.</summary>
public sealed class Decoder7bGenerateSuite : IBenchSuite
{
    public const string SuiteName = "decoder-7b-generate";

    public string Name => SuiteName;

    public string Description => "one process: the 7B-shaped Q4_K_M file loaded stored, 16 tokens generated (part of decoder-7b)";

    public BenchResult Run(BenchContext context)
    {
        var mkl = MklDispatch.Ensure();
        torch.set_num_threads(2);
        string path = Decoder7bSuite.File(context.Quick);
        var metrics = StoredResidentSuite.Measure(path, 16);
        return new BenchResult
        {
            Suite = Name,
            Model = $"{path} loaded stored; 2 threads; CPU {mkl.Cpu}",
            Dataset = "16 greedy tokens after 8",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = 0,
            TrainSeconds = 0,
            PredictSeconds = metrics["generate_seconds"],
            Metrics = metrics,
        };
    }
}
