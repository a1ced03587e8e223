using System.Diagnostics;
using System.Globalization;
using SharpTune.Bench.Reporting;
using SharpTune.Peft;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// "Real text, measured": no pretrained decoder can be fetched here, so the suite pretrains a small Llama-family decoder
/// (about 18M parameters, GPT-2's tokenizer) from scratch on the Brown corpus's informative prose (A–J), then adapts it
/// to the imaginative prose (K–R) with every method, each in its own process (suite lm-KEY), for the same steps and
/// tokens at the method's default learning rate (full fine-tuning and LoRA over a grid of rates). Reports held-out perplexity of the base on both and after each method
/// on K–R, the trainable fraction, time per step, tokens/s and peak memory, and checks the goals: every method lowers
/// K–R perplexity; LoRA recovers at least 90 % of full fine-tuning's reduction in log-perplexity with under 1 % trained.
/// </summary>
public sealed class BrownLmSuite : IBenchSuite
{
    /// <summary>
    /// The methods, in the table's order. BitFit is absent: it trains biases, and Llama's Linear layers have none.
    /// LoRA runs with PEFT's Llama targets (q_proj, v_proj) and with all-linear. Full fine-tuning and LoRA on q/v, the two
    /// the goal compares, each run at their default learning rate and at 4x and 10x it (the same grid for both); the goal
    /// takes full's best and the best LoRA run under 1 % trained on the held-out files, and the table shows every run.
    /// </summary>
    public static readonly IReadOnlyList<BrownLmMethodSuite> Methods =
    [
        new("full", "full"),
        new("full-lr2e-4", "full", detail: "4x the default lr", learningRate: 2e-4),
        new("full-lr5e-4", "full", detail: "10x the default lr", learningRate: 5e-4),
        new("freeze", null),
        new("lora", "lora", new PeftSettings { LoraTargets = ["q_proj", "v_proj"] }, "r 8, alpha 16, q_proj and v_proj"),
        new("lora-lr2e-3", "lora", new PeftSettings { LoraTargets = ["q_proj", "v_proj"] }, "q_proj and v_proj, 4x the default lr", 2e-3),
        new("lora-lr5e-3", "lora", new PeftSettings { LoraTargets = ["q_proj", "v_proj"] }, "q_proj and v_proj, 10x the default lr", 5e-3),
        new("lora-all", "lora", new PeftSettings { LoraTargets = [LinearTargets.AllLinear] }, "r 8, alpha 16, all-linear"),
        new("lora-all-lr5e-3", "lora", new PeftSettings { LoraTargets = [LinearTargets.AllLinear] }, "all-linear, 10x the default lr", 5e-3),
        // The most LoRA can train under the goal's 1 %: every Linear at rank 4 (0.68 %), at the grid's best LoRA rate.
        new("lora-all-r4-lr5e-3", "lora", new PeftSettings { LoraTargets = [LinearTargets.AllLinear], LoraR = 4, LoraAlpha = 8 }, "r 4, alpha 8, all-linear, 10x the default lr", 5e-3),
        // Where full fine-tuning's gain comes from: everything but the embedding matrix (tied with the output head,
        // 72 % of the model) at full fine-tuning's best rate. No adapter under 1 % can reach what this run cannot.
        new("full-frozen-embeddings", "embeddings", detail: "the tied embeddings and output head frozen, 10x the default lr", learningRate: 5e-4),
        new("ia3", "ia3", detail: "k_proj, v_proj, down_proj"),
        new("prompt", "prompt", detail: "20 virtual tokens"),
        new("ptuning", "ptuning", detail: "20 virtual tokens, MLP encoder"),
        new("prefix", "prefix", detail: "20 virtual tokens, projection hidden 32"),
        new("ptuning-v2", "ptuning-v2", detail: "20 virtual tokens, no projection"),
    ];

    /// <summary>Full fine-tuning's runs over the learning-rate grid.</summary>
    static readonly string[] FullRuns = ["full", "full-lr2e-4", "full-lr5e-4"];

    const double RecoveryGoal = 0.9, FractionGoal = 0.01;

    public string Name => "lm";

    public string Description => "Brown: pretrain a ~18M Llama on A–J, adapt to K–R with every method; held-out perplexity, speed, memory";

    public BenchResult Run(BenchContext context)
    {
        Console.WriteLine($"memory: {GlibcHeap.KeepFreedMemory()}");
        var clock = Stopwatch.StartNew();
        var plan = BrownLmPlan.For(context.Quick);
        string fingerprint = plan.Fingerprint(BrownLmData.Files(context));
        var record = BrownLmBase.Saved(context, fingerprint);
        if (record is null) record = BrownLmBase.Pretrain(context, plan, fingerprint);
        else Console.WriteLine($"reusing the pretrained base in {Path.GetRelativePath(context.RepoRoot, BrownLmBase.Folder(context))} " +
                               $"(fingerprint {fingerprint}; delete the folder to train it again)");

        var results = new List<(BrownLmMethodSuite Method, BenchResult Result)>();
        var baseWritten = File.GetLastWriteTimeUtc(Path.Combine(BrownLmBase.Folder(context), BrownLmBase.RecordFile));
        foreach (var method in Methods)
        {
            Console.WriteLine($"\n--- {method.Name} ---");
            string previous = ResultWriter.PathOf(Path.Combine(context.RepoRoot, "bench", "results"), method.Name, context.Quick);
            if (context.Reuse && File.Exists(previous) && File.GetLastWriteTimeUtc(previous) > baseWritten)
            {
                Console.WriteLine($"reusing {Path.GetRelativePath(context.RepoRoot, previous)} (--reuse: written after the base)");
                results.Add((method, ResultWriter.Read(previous)));
                continue;
            }
            results.Add((method, PeftComparisonSuite.RunChild(method.Name, context)));
        }

        var metrics = new OrderedDictionary<string, double>
        {
            ["base_parameters"] = record.Parameters,
            ["base_informative_perplexity"] = record.Informative.Perplexity,
            ["base_imaginative_perplexity"] = record.Imaginative.Perplexity,
            ["pretrain_tokens"] = record.Pretraining.Tokens,
            ["pretrain_seconds"] = record.Pretraining.Seconds,
            ["pretrain_seconds_per_step"] = record.Pretraining.SecondsPerStep,
            ["pretrain_cpu_seconds_per_step"] = record.Pretraining.CpuSecondsPerStep,
            ["pretrain_load_average"] = record.Pretraining.LoadAverage,
            ["pretrain_tokens_per_second"] = record.Pretraining.TokensPerSecond,
            ["pretrain_peak_memory_mib"] = record.Pretraining.PeakMemoryBytes / (1024.0 * 1024.0),
        };
        double baseLoss = record.Imaginative.Loss;
        foreach (var (method, result) in results)
        {
            var m = result.Metrics;
            foreach (string name in new[] { "perplexity", "trainable_parameters", "trainable_fraction", "learning_rate", "seconds_per_step",
                         "cpu_seconds_per_step", "tokens_per_second", "peak_memory_mib", "load_average" })
                metrics[$"{method.Key}_{name}"] = m[name];
            metrics[$"{method.Key}_log_perplexity_reduction"] = baseLoss - m["loss"];
        }
        double Reduction(string key) => metrics[$"{key}_log_perplexity_reduction"];
        int lowered = results.Count(r => Reduction(r.Method.Key) > 0);
        // Every LoRA run under the goal's fraction competes (the q/v grid and all-linear at rank 4); full fine-tuning's grid.
        string bestFull = FullRuns.MaxBy(Reduction)!;
        string bestLora = results.Where(r => r.Method.MethodName(plan) == "lora" && r.Result.Metrics["trainable_fraction"] < FractionGoal)
            .Select(r => r.Method.Key).MaxBy(Reduction)!;
        double recovery = Reduction(bestLora) / Reduction(bestFull);
        metrics["methods_lowering_perplexity"] = lowered;
        metrics["methods_run"] = results.Count;
        metrics["lora_recovery_of_full"] = recovery;
        metrics["lora_recovery_of_full_at_default_rates"] = Reduction("lora") / Reduction("full");
        metrics["lora_all_linear_recovery_of_full"] = Math.Max(Reduction("lora-all"), Reduction("lora-all-lr5e-3")) / Reduction(bestFull);
        metrics["frozen_embeddings_recovery_of_full"] = Reduction("full-frozen-embeddings") / Reduction(bestFull);
        metrics["lora_recovery_of_frozen_embeddings"] = Reduction(bestLora) / Reduction("full-frozen-embeddings");
        metrics["suite_seconds"] = clock.Elapsed.TotalSeconds;

        PrintTable(plan, record, results, context.Quick);
        Console.WriteLine($"\ngoal: every method lowers held-out K–R perplexity: {lowered} of {results.Count} {(lowered == results.Count ? "(met)" : "(not met)")}");
        double loraFraction = metrics[$"{bestLora}_trainable_fraction"];
        bool loraMet = recovery >= RecoveryGoal && loraFraction < FractionGoal;
        Console.WriteLine($"goal: LoRA recovers >= {RecoveryGoal:P0} of full's log-perplexity reduction with < {FractionGoal:P0} trained: " +
                          $"{recovery:P1} with {loraFraction:P2} trained {(loraMet ? "(met)" : "(not met)")} (best of each over the learning-rate grid: " +
                          $"{bestLora} against {bestFull}; at the default rates {metrics["lora_recovery_of_full_at_default_rates"]:P1})");
        Console.WriteLine($"everything but the embeddings (full fine-tuning with the tied embeddings and head frozen): {metrics["frozen_embeddings_recovery_of_full"]:P1} " +
                          $"of full's reduction; the best LoRA recovers {metrics["lora_recovery_of_frozen_embeddings"]:P1} of that run's");
        Console.WriteLine($"suite: {clock.Elapsed.TotalMinutes:F1} minutes");

        return new BenchResult
        {
            Suite = Name,
            Model = $"llama, hidden {plan.Hidden}, {plan.Layers} layers, {plan.Heads} heads, intermediate {plan.Intermediate}, tied embeddings, " +
                    $"GPT-2's tokenizer ({record.Parameters:N0} parameters), pretrained from scratch for {record.Pretraining.Steps} steps of " +
                    $"{plan.PretrainBatch} x {plan.BlockLength} tokens (AdamW lr {plan.PretrainLearningRate:G3}, cosine); every method " +
                    $"{plan.AdaptSteps} steps of {plan.AdaptBatch} x {plan.BlockLength} tokens at its default learning rate (full and LoRA also at 4x and 10x); {GlibcHeap.Setting}",
            Dataset = "Brown corpus as running text (data/brown-text): A–J to pretrain, K–R to adapt; every fifth file held out",
            Quick = context.Quick,
            TrainExamples = results[0].Result.TrainExamples,
            TestExamples = results[0].Result.TestExamples,
            TrainSeconds = record.Pretraining.Seconds + results.Sum(r => r.Result.TrainSeconds),
            PredictSeconds = record.Informative.Seconds + record.Imaginative.Seconds + results.Sum(r => r.Result.PredictSeconds),
            Metrics = metrics,
        };
    }

    /// <summary>The table docs/results.md shows, as Markdown.</summary>
    static void PrintTable(BrownLmPlan plan, LmBaseRecord record, List<(BrownLmMethodSuite Method, BenchResult Result)> results, bool quick)
    {
        var c = CultureInfo.InvariantCulture;
        Console.WriteLine($"\nheld-out perplexity of the base: A–J {record.Informative.Perplexity.ToString("F1", c)} ({record.Informative.Tokens:N0} tokens), " +
                          $"K–R {record.Imaginative.Perplexity.ToString("F1", c)} ({record.Imaginative.Tokens:N0} tokens)");
        Console.WriteLine($"pretraining: {record.Pretraining.Steps} steps, {record.Pretraining.Tokens:N0} tokens in {record.Pretraining.Seconds:F0} s, " +
                          $"{record.Pretraining.SecondsPerStep:F2} s/step ({record.Pretraining.CpuSecondsPerStep:F2} CPU s), {record.Pretraining.TokensPerSecond:F0} tokens/s, " +
                          $"peak {record.Pretraining.PeakMemoryBytes / 1048576.0:N0} MiB, mean load average {record.Pretraining.LoadAverage:F1}{(quick ? " (quick)" : "")}\n");
        Console.WriteLine("| method | held-out K–R perplexity | log-perplexity reduction | trained | lr | s/step | CPU s/step | tokens/s | peak memory | load |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        Console.WriteLine($"| base (no adaptation) | {record.Imaginative.Perplexity.ToString("F1", c)} | – | – | – | – | – | – | – | – |");
        foreach (var (method, result) in results)
        {
            var m = result.Metrics;
            string name = method.MethodName(plan) + (method.Detail.Length > 0 ? $" ({method.Detail})" : "");
            Console.WriteLine($"| {name} | {m["perplexity"].ToString("F1", c)} | {(record.Imaginative.Loss - m["loss"]).ToString("F3", c)} | " +
                              $"{m["trainable_parameters"]:N0} ({(100 * m["trainable_fraction"]).ToString("F2", c)} %) | {m["learning_rate"].ToString("G3", c)} | " +
                              $"{m["seconds_per_step"].ToString("F2", c)} | {m["cpu_seconds_per_step"].ToString("F2", c)} | {m["tokens_per_second"].ToString("F0", c)} | " +
                              $"{m["peak_memory_mib"].ToString("N0", c)} MiB | {m["load_average"].ToString("F1", c)} |");
        }
        Console.WriteLine("| bitfit | not run: Llama's Linear layers and norms have no biases | | | | | | | | |");
    }
}
