using System.Diagnostics;
using System.Globalization;
using SharpTune.Bench.Reporting;
using SharpTune.Peft;
using SharpTune.Training;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// The LoRA variants on the lm suite's decoder task: the Brown base (pretrained by <c>lm</c>, or here when absent) adapted
/// to K–R with plain LoRA and each variant at the same rank, targets, learning rate and steps (rank 4 on every Linear at
/// the lm suite's best LoRA rate, the most LoRA trains there under 1 %), each in a process of its own (suite
/// lm-variant-NAME). Reports held-out K–R perplexity, the training loss over the first logged steps (how fast each
/// starts), time per step and peak memory; with full fine-tuning at its best rate on the same budget, the share of LoRA's
/// gap to it each variant closes.
/// </summary>
public sealed class LmVariantsSuite : IBenchSuite
{
    const int Rank = 4;
    const double LearningRate = 5e-3, LoraPlusRatio = 16;

    static PeftSettings Settings(bool dora = false, bool rslora = false, string init = "kaiming") => new()
    {
        LoraR = Rank, LoraAlpha = 2 * Rank, LoraTargets = [LinearTargets.AllLinear], LoraDora = dora, LoraRsLora = rslora, LoraInit = init,
    };

    /// <summary>The runs, in the order they run (and the table's): plain LoRA first, full fine-tuning last.</summary>
    public static readonly IReadOnlyList<BrownLmMethodSuite> Runs =
    [
        new("variant-lora", "lora", Settings(), $"r {Rank}, alpha {2 * Rank}, all-linear", LearningRate),
        new("variant-dora", "lora", Settings(dora: true), "DoRA", LearningRate),
        new("variant-pissa", "lora", Settings(init: "pissa"), "PiSSA start", LearningRate),
        new("variant-loraplus", "lora", Settings(), $"LoRA+, B at {LoraPlusRatio:G}x", LearningRate, t => t with { LoraPlusLrRatio = LoraPlusRatio }),
        new("variant-rslora", "lora", Settings(rslora: true), "rsLoRA", LearningRate),
        new("variant-olora", "lora", Settings(init: "olora"), "OLoRA start", LearningRate),
        new("variant-full", "full", detail: "full fine-tuning, the lm suite's best rate", learningRate: 5e-4),
    ];

    public string Name => "lm-variants";

    public string Description => $"lm's Brown base adapted to K–R with DoRA, PiSSA, LoRA+, rsLoRA, OLoRA against LoRA (r {Rank}, all-linear) and full fine-tuning";

    public BenchResult Run(BenchContext context)
    {
        var clock = Stopwatch.StartNew();
        var plan = BrownLmPlan.For(context.Quick);
        string fingerprint = plan.Fingerprint(BrownLmData.Files(context));
        var record = BrownLmBase.Saved(context, fingerprint) ?? BrownLmBase.Pretrain(context, plan, fingerprint);
        var baseWritten = File.GetLastWriteTimeUtc(Path.Combine(BrownLmBase.Folder(context), BrownLmBase.RecordFile));

        var results = new List<(BrownLmMethodSuite Run, BenchResult Result)>();
        foreach (var run in Runs)
        {
            Console.WriteLine($"\n--- {run.Name} ---");
            string previous = ResultWriter.PathOf(Path.Combine(context.RepoRoot, "bench", "results"), run.Name, context.Quick);
            if (context.Reuse && File.Exists(previous) && File.GetLastWriteTimeUtc(previous) > baseWritten)
            {
                Console.WriteLine($"reusing {Path.GetRelativePath(context.RepoRoot, previous)} (--reuse: written after the base)");
                results.Add((run, ResultWriter.Read(previous)));
            }
            else results.Add((run, PeftComparisonSuite.RunChild(run.Name, context)));
        }

        double baseLoss = record.Imaginative.Loss;
        var metrics = new OrderedDictionary<string, double> { ["base_imaginative_perplexity"] = record.Imaginative.Perplexity };
        foreach (var (run, result) in results)
        {
            string key = run.Key["variant-".Length..];
            foreach (var (name, value) in result.Metrics)
                if (name is "perplexity" or "trainable_parameters" or "seconds_per_step" or "cpu_seconds_per_step" or "peak_memory_mib" or "load_average"
                    || name.StartsWith("loss_at_step_", StringComparison.Ordinal))
                    metrics[$"{key}_{name}"] = value;
            metrics[$"{key}_log_perplexity_reduction"] = baseLoss - result.Metrics["loss"];
        }
        double Reduction(string key) => metrics[$"{key}_log_perplexity_reduction"];
        // The share of plain LoRA's gap to full fine-tuning (in log-perplexity reduction) each variant closes.
        foreach (var (run, _) in results.Where(r => r.Run.Key is not ("variant-lora" or "variant-full")))
        {
            string key = run.Key["variant-".Length..];
            metrics[$"{key}_gap_closed"] = (Reduction(key) - Reduction("lora")) / (Reduction("full") - Reduction("lora"));
        }
        metrics["suite_seconds"] = clock.Elapsed.TotalSeconds;
        PrintTable(results, baseLoss);

        return new BenchResult
        {
            Suite = Name,
            Model = $"the lm suite's Brown base{(plan == BrownLmPlan.Small ? $" of the small plan ({BrownLmPlan.PlanVariable}=small: hidden {plan.Hidden}, {plan.Layers} layers, {record.Pretraining.Tokens:N0} tokens of pretraining)" : "")} ({record.Parameters:N0} parameters); LoRA r {Rank}, alpha {2 * Rank}, all-linear, lr {LearningRate:G3} with each variant " +
                    $"(LoRA+ ratio {LoraPlusRatio:G}); full fine-tuning at lr 5e-4; {plan.AdaptSteps} steps of {plan.AdaptBatch} x {plan.BlockLength} tokens each",
            Dataset = "Brown imaginative prose (K–R): training files, then the held-out files (data/brown-text)",
            Quick = context.Quick,
            TrainExamples = results[0].Result.TrainExamples,
            TestExamples = results[0].Result.TestExamples,
            TrainSeconds = results.Sum(r => r.Result.TrainSeconds),
            PredictSeconds = results.Sum(r => r.Result.PredictSeconds),
            Metrics = metrics,
        };
    }

    /// <summary>The table docs/results.md shows, as Markdown.</summary>
    static void PrintTable(List<(BrownLmMethodSuite Run, BenchResult Result)> results, double baseLoss)
    {
        var c = CultureInfo.InvariantCulture;
        var steps = results[0].Result.Metrics.Keys.Where(k => k.StartsWith("loss_at_step_", StringComparison.Ordinal)).Take(3).ToList();
        Console.WriteLine($"\n| run | held-out K–R perplexity | log-ppl reduction | {string.Join(" | ", steps.Select(s => $"train loss, step {s["loss_at_step_".Length..]}"))} | trained | s/step | CPU s/step | peak memory | load |");
        Console.WriteLine($"| --- | --- | --- | {string.Join(" | ", steps.Select(_ => "---"))} | --- | --- | --- | --- | --- |");
        foreach (var (run, result) in results)
        {
            var m = result.Metrics;
            string curve = string.Join(" | ", steps.Select(s => m.TryGetValue(s, out double v) ? v.ToString("F3", c) : "–"));
            Console.WriteLine($"| {run.Detail} | {m["perplexity"].ToString("F1", c)} | {(baseLoss - m["loss"]).ToString("F3", c)} | {curve} | " +
                              $"{m["trainable_parameters"]:N0} | {m["seconds_per_step"].ToString("F2", c)} | {m["cpu_seconds_per_step"].ToString("F2", c)} | " +
                              $"{m["peak_memory_mib"]:N0} MiB | {m["load_average"].ToString("F1", c)} |");
        }
    }
}
