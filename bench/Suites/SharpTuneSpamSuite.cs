using System.Diagnostics;
using SharpTune.Bench.Data;
using SharpTune.Bench.Reporting;
using SharpTune.Data;
using SharpTune.Inference;
using SharpTune.Models;
using SharpTune.Training;

namespace SharpTune.Bench.Suites;

/// <summary>
/// SharpTune fine-tuning the built-in minilm on the SpamAssassin split: best model chosen on 10 % of the
/// training data (never the test split), then scored on the test split the same way as the ML.NET peer.
/// The method (full fine-tuning or a parameter-efficient one) is a constructor argument, so each method
/// is its own suite: spam-full, spam-lora, ...
/// </summary>
/// <param name="trainEvery">Train on every n-th training message (1: all); the comparison of methods uses a subset.</param>
/// <param name="maxLength">Tokens per message: most messages are longer than 128 tokens.</param>
/// <param name="meanPooling">Average the tokens' states (how minilm was trained as a sentence encoder) instead of the pooled [CLS].</param>
/// <param name="precision">fp32, or bf16 mixed precision.</param>
/// <param name="configure">Further options (a LoRA variant's flags, say) applied last.</param>
public sealed class SharpTuneSpamSuite(string method, int epochs, double? learningRate = null, int trainEvery = 1, string? name = null, int maxLength = 128, bool meanPooling = true, string precision = "fp32",
    Func<FineTuneOptions, FineTuneOptions>? configure = null) : IBenchSuite
{
    public string Name => name ?? $"spam-{method}";

    public string Description => $"SharpTune minilm, method {method}{(precision == "fp32" ? "" : $", {precision}")}, on SpamAssassin (data/spam)";

    public BenchResult Run(BenchContext context)
    {
        string trainPath = context.RequireDataFile("spam", "train.csv");
        List<SpamExample> test = SpamExample.ReadCsv(context.RequireDataFile("spam", "test.csv"));
        // Quick: every 8th test message, so a composite of several methods still finishes in a few minutes.
        if (context.Quick) test = test.Where((_, i) => i % 8 == 0).ToList();
        string run = Path.Combine(context.RepoRoot, "bench", "results", "runs", Name + (context.Quick ? "-quick" : ""));
        if (Directory.Exists(run)) Directory.Delete(run, recursive: true);

        string train = trainPath;
        // Quick: every 24th training message and one epoch, enough to see the method learn in well under a minute.
        int every = context.Quick ? Math.Max(24, trainEvery) : trainEvery;
        if (every > 1)
        {
            train = Path.Combine(run + "-data", "train.csv");
            Directory.CreateDirectory(Path.GetDirectoryName(train)!);
            var lines = SpamExample.ReadCsv(trainPath).Where((_, i) => i % every == 0)
                .Select(e => $"{Csv(e.Text)},{(e.IsSpam ? "spam" : "ham")},{e.Group}");
            File.WriteAllLines(train, new[] { "text,label,group" }.Concat(lines));
        }

        var options = new FineTuneOptions
        {
            Model = "minilm",
            Train = train,
            ValidationFraction = 0.1,
            MaxLength = maxLength,
            Pooling = meanPooling ? Pooling.Mean : Pooling.Pooler,
            Method = method,
            Precision = precision,
            Out = run,
            Training = new TrainingOptions
            {
                Epochs = context.Quick ? 1 : epochs,
                BatchSize = 32,
                LearningRate = learningRate ?? TrainingMethods.LearningRateFor(method),
                Seed = 42,
                LogEverySteps = 20,
            },
        };
        options = configure?.Invoke(options) ?? options;
        var clock = Stopwatch.StartNew();
        var summary = new FineTuneJob(options, Console.WriteLine).Run();
        double trainSeconds = clock.Elapsed.TotalSeconds;

        clock.Restart();
        using var predictor = new Predictor(summary.BestModelFolder);
        var predictions = predictor.PredictTexts(test.Select((e, i) => new TextExample(e.Text, null, null, $"test:{i}")).ToList());
        double predictSeconds = clock.Elapsed.TotalSeconds;

        var scores = BinaryClassificationScores.Compute("spam",
            test.Zip(predictions, (example, p) => (example.IsSpam, p.Labels[0] == "spam", example.Group)));
        return new BenchResult
        {
            Suite = Name,
            Model = $"SharpTune minilm, {method}{(precision == "fp32" ? "" : $" in {precision}")} ({summary.Parameters}), {options.Training.Epochs} epoch(s) on {(every == 1 ? "all" : $"every {every}th")} training message(s), batch 32, max length {maxLength}, {(meanPooling ? "mean pooling" : "pooled [CLS]")}, lr {options.Training.LearningRate:G3}",
            Dataset = "SpamAssassin public corpus (data/spam)",
            Quick = context.Quick,
            TrainExamples = summary.TrainExamples,
            TestExamples = test.Count,
            TrainSeconds = trainSeconds,
            PredictSeconds = predictSeconds,
            Metrics = new()
            {
                ["accuracy"] = scores.Accuracy,
                ["precision"] = scores.Precision,
                ["recall"] = scores.Recall,
                ["f1"] = scores.F1,
                ["hard_ham_accuracy"] = scores.GroupAccuracy("hard-ham-1"),
                ["trainable_parameters"] = summary.Parameters.Trainable,
                ["trainable_fraction"] = summary.Parameters.Fraction,
                ["seconds_per_step"] = summary.SecondsPerStep,
                ["peak_memory_mib"] = summary.PeakMemoryBytes / (1024.0 * 1024.0),
            },
            Confusion = scores.Confusion,
            Groups = scores.Groups,
        };
    }

    static string Csv(string field) => $"\"{field.Replace("\"", "\"\"")}\"";
}
