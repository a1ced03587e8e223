using System.Diagnostics;
using System.Text.Json;
using SharpTune.Bench.Reporting;
using SharpTune.Native;
using TorchSharp;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// Memory and time of a fine-tuning step of a Qwen2.5-0.5B-shaped decoder (random weights, batch 4 x 512 tokens,
/// vocabulary 151,936): LoRA with everything that saves memory (a bf16 frozen base, checkpointed layers, the chunked
/// head and loss) against the same without each saving, and LoRA against full fine-tuning. Each configuration runs as
/// its own process (<see cref="DecoderTrainingStepSuite"/>, <c>decoder-memory-&lt;key&gt;</c>), so each peak resident set
/// is that configuration's alone.
/// </summary>
public sealed class DecoderMemorySuite : IBenchSuite
{
    /// <summary>Goals: the memory-saving LoRA step under 4 GiB resident; a LoRA step at most 0.75 of a full fine-tuning step.</summary>
    const double PeakGoalMb = 4.0 * 1024 * 1024 * 1024 / 1e6, LoraTimeGoal = 0.75;

    public static IReadOnlyList<DecoderStepConfig> Configs { get; } =
    [
        // As `sharptune train --base-dtype bf16 --gradient-checkpointing` runs, under glibc's defaults.
        new("lora-saving", "LoRA r8, bf16 frozen base, checkpointed layers, chunked loss", Lora: true, Bf16Base: true, Checkpointing: true, ChunkedLoss: true, NeedsGigabytes: 5),
        // glibc's mmap threshold fixed at 128 KiB, so every tensor larger than that goes back to the system when freed.
        new("lora-saving-mmap", "the same with glibc's mmap threshold fixed at 128 KiB (MALLOC_MMAP_THRESHOLD_=131072)", Lora: true, Bf16Base: true, Checkpointing: true, ChunkedLoss: true, NeedsGigabytes: 4,
            ReturnFreedMemory: true),
        new("lora-saving-full-logits", "LoRA r8, bf16 frozen base, checkpointed layers, full fp32 logits", Lora: true, Bf16Base: true, Checkpointing: true, ChunkedLoss: false, NeedsGigabytes: 8),
        new("lora-bf16", "LoRA r8, bf16 frozen base, chunked loss, no checkpointing", Lora: true, Bf16Base: true, Checkpointing: false, ChunkedLoss: true, NeedsGigabytes: 10),
        new("lora", "LoRA r8, fp32, chunked loss, no checkpointing", Lora: true, Bf16Base: false, Checkpointing: false, ChunkedLoss: true, NeedsGigabytes: 14),
        new("full", "full fine-tuning, fp32, chunked loss, no checkpointing", Lora: false, Bf16Base: false, Checkpointing: false, ChunkedLoss: true, NeedsGigabytes: 20),
    ];

    public string Name => "decoder-memory";

    public string Description => "Qwen2.5-0.5B-shaped decoder: peak memory and time of LoRA and full fine-tuning steps at 4 x 512 tokens, one process each";

    public BenchResult Run(BenchContext context)
    {
        var clock = Stopwatch.StartNew();
        var metrics = new OrderedDictionary<string, double>();
        var notes = new List<string>();
        string cpu = CpuDescription.Current.ToString();
        var (fp32Ceiling, bf16Ceiling) = Ceilings();
        metrics["fp32_ceiling_flops_per_s"] = fp32Ceiling;
        metrics["bf16_ceiling_flops_per_s"] = bf16Ceiling;
        Console.WriteLine($"libtorch's product ceiling on {DecoderTrainingStepSuite.Threads} threads: fp32 {fp32Ceiling / 1e9:F0} GFLOP/s, bf16 {bf16Ceiling / 1e9:F0} GFLOP/s");
        foreach (var config in Configs)
        {
            double available = AvailableGigabytes();
            if (!context.Quick && available < config.NeedsGigabytes)
            {
                notes.Add($"{config.Key} skipped: it needs about {config.NeedsGigabytes} GB and {available:F1} GB were available");
                Console.WriteLine("  " + notes[^1]);
                continue;
            }
            Console.WriteLine($"\n-- {DecoderTrainingStepSuite.Prefix}{config.Key}: {config.Label}");
            var child = RunChild(context, DecoderTrainingStepSuite.Prefix + config.Key,
                config.ReturnFreedMemory ? new Dictionary<string, string> { [NativeAllocator.EnvironmentVariable] = "system" } : null);
            if (child is null)
            {
                notes.Add($"{config.Key} failed (its output is above)");
                continue;
            }
            foreach (var (key, value) in child) metrics[$"{config.Key}_{key}"] = value;
            if (child.TryGetValue("flops_per_s", out double rate))
            {
                metrics[$"{config.Key}_flops_over_bf16_ceiling"] = rate / bf16Ceiling;
                metrics[$"{config.Key}_flops_over_fp32_ceiling"] = rate / fp32Ceiling;
                Console.WriteLine($"  {config.Key}: {rate / 1e9:F1} GFLOP/s, {rate / bf16Ceiling:P1} of the bf16 ceiling, {rate / fp32Ceiling:P1} of fp32's");
            }
        }

        string? Goal(string what, string key, Func<double, bool> met, string format)
            => metrics.TryGetValue(key, out double v) ? $"{what}: {v.ToString(format)}, {(met(v) ? "met" : "NOT met")}" : null;
        if (metrics.TryGetValue("lora_step_seconds", out double lora) && metrics.TryGetValue("full_step_seconds", out double full))
            metrics["lora_over_full_step_time"] = lora / full;
        if (metrics.TryGetValue("lora_step_cpu_seconds", out double loraCpu) && metrics.TryGetValue("full_step_cpu_seconds", out double fullCpu))
            metrics["lora_over_full_step_cpu_time"] = loraCpu / fullCpu;
        var goals = new[]
        {
            Goal($"memory-saving LoRA step peak resident < {PeakGoalMb:F0} MB (4 GiB), as the CLI runs it", "lora-saving_peak_resident_mb", v => v < PeakGoalMb, "F0"),
            Goal($"the same with the mmap threshold fixed < {PeakGoalMb:F0} MB", "lora-saving-mmap_peak_resident_mb", v => v < PeakGoalMb, "F0"),
            Goal($"LoRA step time <= {LoraTimeGoal} x full fine-tuning (fp32, no checkpointing)", "lora_over_full_step_time", v => v <= LoraTimeGoal, "F2"),
            Goal($"LoRA step CPU time <= {LoraTimeGoal} x full fine-tuning's", "lora_over_full_step_cpu_time", v => v <= LoraTimeGoal, "F2"),
        }.OfType<string>().ToList();
        Console.WriteLine("\ngoals:");
        foreach (var g in goals) Console.WriteLine("  " + g);
        foreach (var n in notes) Console.WriteLine("  note: " + n);

        return new BenchResult
        {
            Suite = Name,
            Model = $"qwen2 with {(context.Quick ? Qwen2Shape.Quick : Qwen2Shape.Qwen25_05B).Name}, random weights; {DecoderTrainingStepSuite.Threads} threads; CPU {cpu}; " +
                    $"each configuration in its own process" + (notes.Count > 0 ? "; " + string.Join("; ", notes) : ""),
            Dataset = $"random token ids, batch {DecoderTrainingStepSuite.Batch} x {DecoderTrainingStepSuite.Length}; step = forward, loss, backward, AdamW step, zero-grad; best step after a warm-up",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = 0,
            TrainSeconds = clock.Elapsed.TotalSeconds,
            PredictSeconds = 0,
            Metrics = metrics,
        };
    }

    /// <summary>
    /// libtorch's fp32 and bf16 products on this machine at the step's thread count: (2048 x 896) times (896 x 4864), an
    /// MLP projection over a batch's tokens at Qwen2.5-0.5B's widths, the best of several.
    /// </summary>
    static (double Fp32, double Bf16) Ceilings()
    {
        torch.set_num_threads(DecoderTrainingStepSuite.Threads);
        return (MatmulCeiling.Flops(2048, 896, 4864, torch.ScalarType.Float32, 7), MatmulCeiling.Flops(2048, 896, 4864, torch.ScalarType.BFloat16, 7));
    }

    /// <summary>Runs one configuration as a child process of this program and reads the metrics it wrote.</summary>
    public static IReadOnlyDictionary<string, double>? RunChild(BenchContext context, string suite, IReadOnlyDictionary<string, string>? environment = null)
    {
        string self = Environment.ProcessPath ?? throw new InvalidOperationException("the bench's own executable is unknown");
        var start = new ProcessStartInfo(self) { UseShellExecute = false, WorkingDirectory = context.RepoRoot };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") start.ArgumentList.Add(typeof(DecoderMemorySuite).Assembly.Location);
        start.ArgumentList.Add(suite);
        if (context.Quick) start.ArgumentList.Add("--quick");
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        string path = ResultWriter.PathOf(Path.Combine(context.RepoRoot, "bench", "results"), suite, context.Quick);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.Delete(path);
        using var process = Process.Start(start)!;
        process.WaitForExit();
        if (process.ExitCode != 0 || !File.Exists(path)) return null;
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        return document.RootElement.GetProperty("metrics").EnumerateObject()
            .Where(m => m.Value.ValueKind == JsonValueKind.Number)
            .ToDictionary(m => m.Name, m => m.Value.GetDouble());
    }

    /// <summary>MemAvailable of /proc/meminfo, in GB.</summary>
    static double AvailableGigabytes()
    {
        foreach (var line in File.ReadLines("/proc/meminfo"))
            if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                return long.Parse(line["MemAvailable:".Length..].Trim().Split(' ')[0]) * 1024 / 1e9;
        return double.PositiveInfinity;
    }
}
