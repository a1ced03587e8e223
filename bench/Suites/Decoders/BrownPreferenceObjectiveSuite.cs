using System.Diagnostics;
using SharpTune.Bench.Reporting;
using SharpTune.Inference;
using SharpTune.ModelFolders;
using SharpTune.Models.Decoders;
using SharpTune.Training;
using SharpTune.Training.Tasks;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// One objective of the <c>preference</c> suite (suite preference-dpo or preference-orpo), in a process of its own so its
/// peak memory is its own: a <see cref="FineTuneJob"/> with <c>--task preference --method lora</c> on the suite's copy of
/// the Brown base, the held-out pairs as validation (as <c>sharptune train</c> runs it); then the base and the tuned
/// model side by side on the held-out pairs and on continuations of held-out prompts labelled by the genre classifier.
/// Needs what <c>preference</c> prepares (the base copy, the pairs, the classifier).
/// </summary>
public sealed class BrownPreferenceObjectiveSuite(string objective) : IBenchSuite
{
    public string Objective => objective;

    public string Name => $"preference-{objective}";

    public string Description => $"one objective of preference: {objective.ToUpperInvariant()} with LoRA on the Brown base (run preference first)";

    public BenchResult Run(BenchContext context)
    {
        Console.WriteLine($"memory: {GlibcHeap.KeepFreedMemory()}");
        var plan = BrownPreferencePlan.For(context.Quick);
        var folders = new BrownPreferenceFolders(context);
        folders.RequirePrepared();
        string run = Path.Combine(folders.Work, objective);
        if (Directory.Exists(run)) Directory.Delete(run, recursive: true);

        var options = new FineTuneOptions
        {
            Model = folders.Base, Task = "preference", Train = folders.TrainPairs, Validation = folders.HeldOutPairs,
            Method = "lora", Peft = BrownPreferencePlan.Lora, MaxLength = 4 * plan.WindowTokens, Out = run,
            Training = new TrainingOptions
            {
                MaxSteps = plan.TuneSteps, BatchSize = plan.TuneBatch, LearningRate = plan.TuneLearningRate, Seed = BrownPreferencePlan.Seed,
                EvalEverySteps = plan.EvalEverySteps, LogEverySteps = context.Quick ? 1 : 16,
            },
            Preference = new PreferenceOptions { Objective = objective, Beta = BrownPreferencePlan.Beta, OrpoLambda = BrownPreferencePlan.OrpoLambda },
        };
        var loads = new LoadSampler();
        var process = Process.GetCurrentProcess();
        var cpu = process.TotalProcessorTime;
        var summary = new FineTuneJob(options, line => Console.WriteLine($"  {line}"), [loads]).Run();
        process.Refresh();
        double cpuPerStep = (process.TotalProcessorTime - cpu).TotalSeconds / Math.Max(1, summary.Steps);
        var final = summary.FinalMetrics;
        Console.WriteLine($"{objective}: {summary.Steps} steps, {summary.SecondsPerStep:F2} s/step ({cpuPerStep:F2} CPU s), peak {summary.PeakMemoryBytes / 1048576.0:N0} MiB; " +
                          $"held-out reward accuracy {final["reward_accuracy"]:P1}, margin {final["reward_margin"]:F3}");

        // Before and after, each model loaded as eval/generate load it: the base folder, and the run's final adapter over it.
        var clock = Stopwatch.StartNew();
        var prompts = BrownPreferenceScoring.Prompts(folders.HeldOutPairs, plan.GeneratePrompts);
        using var classifier = new Predictor(folders.Classifier);
        PreferenceFigures before, after;
        using (var lm = LanguageModelFolder.Load(folders.Base))
            before = BrownPreferenceScoring.Measure(lm, folders.HeldOutPairs, prompts, classifier, plan, "base", Path.Combine(run, "samples-base.jsonl"));
        using (var lm = LanguageModelFolder.Load(Path.Combine(run, "final")))
            after = BrownPreferenceScoring.Measure(lm, folders.HeldOutPairs, prompts, classifier, plan, objective, Path.Combine(run, $"samples-{objective}.jsonl"));
        var implicitRewards = LanguageModelComparison.ImplicitRewards(after.Pairs, before.Pairs);

        var metrics = new OrderedDictionary<string, double>
        {
            ["reward_accuracy"] = final["reward_accuracy"],
            ["reward_margin"] = final["reward_margin"],
            ["rewards_chosen"] = final["rewards_chosen"],
            ["rewards_rejected"] = final["rewards_rejected"],
            ["eval_loss"] = final["loss"],
            ["base_preference_accuracy"] = before.PreferenceAccuracy,
            ["tuned_preference_accuracy"] = after.PreferenceAccuracy,
            ["base_logps_margin"] = before.LogpsMargin,
            ["tuned_logps_margin"] = after.LogpsMargin,
            ["implicit_reward_accuracy"] = implicitRewards["reward_accuracy"],
            ["base_sampled_imaginative_fraction"] = before.Sampled.All,
            ["tuned_sampled_imaginative_fraction"] = after.Sampled.All,
            ["base_sampled_imaginative_fraction_fiction_prompts"] = before.Sampled.Fiction,
            ["tuned_sampled_imaginative_fraction_fiction_prompts"] = after.Sampled.Fiction,
            ["base_sampled_imaginative_fraction_informative_prompts"] = before.Sampled.Informative,
            ["tuned_sampled_imaginative_fraction_informative_prompts"] = after.Sampled.Informative,
            ["base_greedy_imaginative_fraction"] = before.Greedy.All,
            ["tuned_greedy_imaginative_fraction"] = after.Greedy.All,
            ["trainable_parameters"] = summary.Parameters.Trainable,
            ["trainable_fraction"] = summary.Parameters.Fraction,
            ["learning_rate"] = plan.TuneLearningRate,
            ["steps"] = summary.Steps,
            ["seconds_per_step"] = summary.SecondsPerStep,
            ["cpu_seconds_per_step"] = cpuPerStep,
            ["peak_memory_mib"] = summary.PeakMemoryBytes / (1024.0 * 1024.0),
            ["load_average"] = loads.Mean,
            ["adapter_bytes"] = summary.AdapterBytes,
        };
        return new BenchResult
        {
            Suite = Name,
            Model = $"the lm suite's Brown base tuned with {objective.ToUpperInvariant()} (β {BrownPreferencePlan.Beta}, ORPO λ {BrownPreferencePlan.OrpoLambda}), " +
                    $"LoRA r {BrownPreferencePlan.LoraRank}, alpha {BrownPreferencePlan.LoraAlpha} on every Linear, {summary.Steps} steps of {plan.TuneBatch} pairs, " +
                    $"AdamW lr {plan.TuneLearningRate:G3}, linear schedule",
            Dataset = $"Brown preference pairs (fiction continuation chosen over an informative one, {plan.PromptTokens}+{plan.ContinuationTokens} GPT-2 tokens; data/brown-text)",
            Quick = context.Quick,
            TrainExamples = summary.TrainExamples,
            TestExamples = summary.ValidationExamples,
            TrainSeconds = summary.SecondsPerStep * summary.Steps,
            PredictSeconds = clock.Elapsed.TotalSeconds,
            Metrics = metrics,
        };
    }

    /// <summary>The machine's mean one-minute load average over the logged steps.</summary>
    sealed class LoadSampler : ITrainerCallback
    {
        readonly List<double> loads = [];

        public double Mean => loads.Count > 0 ? loads.Average() : BrownLmTraining.LoadAverage();

        public void OnStep(StepInfo step) => loads.Add(BrownLmTraining.LoadAverage());
    }
}
