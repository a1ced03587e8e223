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
        // Step time in turns: on a shared machine a run's own s/step says more about the other programs than about the
        // variant, so each variant's training step is also timed in the same process, the variants taking turns.
        var steps = StepTimes(context, plan);
        for (int i = 0; i < Runs.Count; i++)
        {
            string key = Runs[i].Key["variant-".Length..];
            metrics[$"{key}_step_seconds_in_turns"] = steps.Best(i);
            if (i > 0) steps.Ratio(i, 0).Report(metrics, $"{key}_step_time_over_lora");
        }
        metrics["suite_seconds"] = clock.Elapsed.TotalSeconds;
        PrintTable(results, baseLoss, steps);

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

    const int TurnRounds = 5, StepsInARow = 2;

    /// <summary>
    /// One training step (forward, loss, backward, AdamW step with LoRA+'s groups where it has them, zero-grad) of every
    /// run on the same batch, built side by side in this process and timed in turns (<see cref="Timing.InTurns"/>).
    /// </summary>
    static TurnTimes StepTimes(BenchContext context, BrownLmPlan plan)
    {
        string baseFolder = BrownLmBase.Folder(context);
        var (train, _, _) = BrownLmData.Rows(BrownLmData.Path(context, "train", informative: false), plan.BlockLength);
        var batch = train.Take(plan.AdaptBatch).ToList();
        var owned = new List<IDisposable>();
        try
        {
            var actions = new List<Action>();
            foreach (var run in Runs)
            {
                var (decoder, model) = run.Build(baseFolder, plan);
                owned.Add(decoder);
                owned.Add(model);
                model.train();
                var options = run.TrainingOptions(plan, context.Quick);
                var optimizer = OptimizerFactory.Create(options.Optimizer, model, options.LearningRate, options.WeightDecay, options.Momentum, options.LoraPlusLrRatio);
                var objective = new CausalLmObjective(model, BrownLmData.EndOfText);
                actions.Add(() =>
                {
                    using var scope = TorchSharp.torch.NewDisposeScope();
                    objective.Loss(batch).backward();
                    optimizer.step();
                    optimizer.zero_grad();
                });
            }
            Console.WriteLine($"\ntiming one training step of each run in turns: {TurnRounds} rounds, best of {StepsInARow} in a row");
            return Timing.InTurns(TurnRounds, StepsInARow, actions.ToArray());
        }
        finally
        {
            foreach (var item in owned) item.Dispose();
        }
    }

    /// <summary>The table docs/results.md shows, as Markdown.</summary>
    static void PrintTable(List<(BrownLmMethodSuite Run, BenchResult Result)> results, double baseLoss, TurnTimes steps)
    {
        var c = CultureInfo.InvariantCulture;
        var curveSteps = results[0].Result.Metrics.Keys.Where(k => k.StartsWith("loss_at_step_", StringComparison.Ordinal)).Take(3).ToList();
        Console.WriteLine($"\n| run | held-out K–R perplexity | log-ppl reduction | {string.Join(" | ", curveSteps.Select(s => $"train loss, step {s["loss_at_step_".Length..]}"))} | trained | step in turns | over LoRA | s/step alone | peak memory | load |");
        Console.WriteLine($"| --- | --- | --- | {string.Join(" | ", curveSteps.Select(_ => "---"))} | --- | --- | --- | --- | --- | --- |");
        for (int i = 0; i < results.Count; i++)
        {
            var (run, result) = results[i];
            var m = result.Metrics;
            string curve = string.Join(" | ", curveSteps.Select(s => m.TryGetValue(s, out double v) ? v.ToString("F3", c) : "–"));
            string ratio = i == 0 ? "1" : steps.Ratio(i, 0).Median.ToString("F2", c);
            Console.WriteLine($"| {run.Detail} | {m["perplexity"].ToString("F1", c)} | {(baseLoss - m["loss"]).ToString("F3", c)} | {curve} | " +
                              $"{m["trainable_parameters"]:N0} | {steps.Best(i).ToString("F3", c)} s | {ratio} | {m["seconds_per_step"].ToString("F2", c)} | " +
                              $"{m["peak_memory_mib"]:N0} MiB | {m["load_average"].ToString("F1", c)} |");
        }
    }
}
