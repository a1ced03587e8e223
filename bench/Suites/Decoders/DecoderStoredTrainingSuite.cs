using System.Diagnostics;
using SharpTune.Bench.Reporting;
using SharpTune.Native;
using TorchSharp;
using LLama.Native;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// A LoRA step (4 x 512 tokens, checkpointed layers, the chunked head and loss, as <c>sharptune train</c> runs it) over
/// the Qwen2.5-0.5B-shaped Q4_K_M file of decoder-speed (llama.cpp's quantizer) kept stored, against the same step over
/// the same file read into a bf16 base (<c>--base-dtype bf16</c>), both computing in bf16 (the stored one with
/// <c>--precision bf16</c>); and, for the record, the stored base with fp32 activations. Each configuration in its own process
/// (<see cref="DecoderTrainingStepSuite"/>), as decoder-memory runs them. Goals: time &lt;= 1.3x, peak &lt;= 0.6x the bf16 step's.
/// </summary>
public sealed class DecoderStoredTrainingSuite : IBenchSuite
{
    const double TimeGoal = 1.3, PeakGoal = 0.6;

    static readonly GgufBase Stored = new(Q4KmFile, Shape, Stored: true), Dense = new(Q4KmFile, Shape, Stored: false);

    static Qwen2Shape Shape(bool quick) => quick ? Qwen2Shape.Quick : Qwen2Shape.Qwen25_05B;

    static string Q4KmFile(bool quick) => RandomQwen2Gguf.Quantized(Shape(quick), RandomQwen2Gguf.Folder(quick), "q4_k_m", LLamaFtype.MOSTLY_Q4_K_M);

    public static IReadOnlyList<DecoderStepConfig> Configs { get; } =
    [
        new("q4km-stored-lora", "LoRA r8 over a Q4_K_M base kept stored, computed in bf16 (--precision bf16), checkpointed layers, chunked loss", Lora: true,
            Bf16Base: false, Checkpointing: true, ChunkedLoss: true, NeedsGigabytes: 3, Gguf: Stored, Bf16Compute: true),
        new("q4km-bf16-lora", "LoRA r8 over the same Q4_K_M file read into a bf16 base, checkpointed layers, chunked loss", Lora: true, Bf16Base: true,
            Checkpointing: true, ChunkedLoss: true, NeedsGigabytes: 5, Gguf: Dense),
        new("q4km-stored-fp32-lora", "LoRA r8 over the Q4_K_M base kept stored, fp32 activations (--precision fp32, the default), checkpointed layers, chunked loss",
            Lora: true, Bf16Base: false, Checkpointing: true, ChunkedLoss: true, NeedsGigabytes: 4, Gguf: Stored),
    ];

    public string Name => "decoder-stored-training";

    public string Description => "LoRA step (4 x 512, checkpointing) over a Q4_K_M base kept stored vs read into bf16, one process each";

    public BenchResult Run(BenchContext context)
    {
        var clock = Stopwatch.StartNew();
        var metrics = new OrderedDictionary<string, double>();
        var notes = new List<string>();
        string cpu = CpuDescription.Current.ToString();
        Console.WriteLine($"CPU {cpu}; load {DecoderSpeedSuite.Load()}");
        Q4KmFile(context.Quick);                                                 // written once, before the children
        torch.set_num_threads(DecoderTrainingStepSuite.Threads);
        double bf16Ceiling = MatmulCeiling.Flops(2048, 896, 4864, torch.ScalarType.BFloat16, 7);
        metrics["bf16_ceiling_flops_per_s"] = bf16Ceiling;
        // Twice each, in turns: the machine is shared, so the order of the processes should not decide the ratio.
        int rounds = int.TryParse(Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_ROUNDS"), out int r) ? r : context.Quick ? 1 : 2;
        for (int round = 0; round < rounds; round++)
            foreach (var config in Configs)
            {
                Console.WriteLine($"\n-- {DecoderTrainingStepSuite.Prefix}{config.Key} (round {round + 1}, load {DecoderSpeedSuite.Load()})");
                var child = DecoderMemorySuite.RunChild(context, DecoderTrainingStepSuite.Prefix + config.Key);
                if (child is null) { notes.Add($"{config.Key} failed in round {round + 1} (its output is above)"); continue; }
                foreach (var (key, value) in child)
                    metrics[$"{config.Key}_{key}_round{round + 1}"] = value;
            }
        foreach (var config in Configs)
            foreach (string key in new[] { "step_seconds", "step_cpu_seconds", "peak_resident_mb", "training_peak_resident_mb", "baseline_resident_mb", "flops_per_s" })
            {
                var values = Enumerable.Range(1, rounds).Select(r => metrics.TryGetValue($"{config.Key}_{key}_round{r}", out double v) ? v : double.NaN).Where(v => !double.IsNaN(v)).ToList();
                if (values.Count > 0) metrics[$"{config.Key}_{key}"] = key.Contains("peak") ? values.Max() : values.Min();
            }
        string a = Configs[0].Key, b = Configs[1].Key;
        string? Ratio(string key, double goal, string what)
        {
            if (!metrics.TryGetValue($"{a}_{key}", out double x) || !metrics.TryGetValue($"{b}_{key}", out double y)) return null;
            metrics[$"stored_over_bf16_{key}"] = x / y;
            return $"{what}: {x:F1} / {y:F1} = {x / y:F2} (goal <= {goal}), {(x / y <= goal ? "met" : "NOT met")}";
        }
        var goals = new[]
        {
            Ratio("step_seconds", TimeGoal, "step time, stored / bf16, s"),
            Ratio("step_cpu_seconds", TimeGoal, "step CPU time, stored / bf16, s"),
            Ratio("peak_resident_mb", PeakGoal, "peak resident, stored / bf16, MB"),
        }.OfType<string>().ToList();
        // The stored base with fp32 activations (the default precision) against the same bf16 base, for the record.
        string c = Configs[2].Key;
        foreach (var (key, what) in new[] { ("step_seconds", "step time"), ("peak_resident_mb", "peak resident") })
            if (metrics.TryGetValue($"{c}_{key}", out double x) && metrics.TryGetValue($"{b}_{key}", out double y))
            {
                metrics[$"stored_fp32_over_bf16_{key}"] = x / y;
                goals.Add($"{what}, stored with fp32 activations / bf16: {x:F1} / {y:F1} = {x / y:F2} (not a goal's figure)");
            }
        if (metrics.TryGetValue($"{a}_flops_per_s", out double rate)) metrics[$"{a}_flops_over_bf16_ceiling"] = rate / bf16Ceiling;
        if (metrics.TryGetValue($"{b}_flops_per_s", out double rateB)) metrics[$"{b}_flops_over_bf16_ceiling"] = rateB / bf16Ceiling;
        Console.WriteLine($"\ngoals (load {DecoderSpeedSuite.Load()}):");
        foreach (var g in goals) Console.WriteLine("  " + g);
        foreach (var n in notes) Console.WriteLine("  note: " + n);
        return new BenchResult
        {
            Suite = Name,
            Model = $"qwen2 with {Shape(context.Quick).Name}, random weights quantized to Q4_K_M by llama.cpp; LoRA r8 on every Linear; {DecoderTrainingStepSuite.Threads} threads; CPU {cpu}; " +
                    $"each configuration in its own process, {rounds} rounds in turns (best step time, highest peak); load at the end {DecoderSpeedSuite.Load()}" +
                    (notes.Count > 0 ? "; " + string.Join("; ", notes) : ""),
            Dataset = $"random token ids, batch {DecoderTrainingStepSuite.Batch} x {DecoderTrainingStepSuite.Length}; step = forward, loss, backward, AdamW step, zero-grad; best step after a warm-up",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = 0,
            TrainSeconds = clock.Elapsed.TotalSeconds,
            PredictSeconds = 0,
            Metrics = metrics,
        };
    }
}
