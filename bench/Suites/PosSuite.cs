using SharpTune.Bench.Reporting;
using SharpTune.Inference;
using SharpTune.Training;

namespace SharpTune.Bench.Suites;

/// <summary>
/// Part-of-speech tagging of the Brown corpus (data/brown, simplified tags) with minilm and a per-word
/// head, with or without a CRF. Scored by token accuracy on the test files (every tenth file).
/// </summary>
/// <param name="trainEvery">Train on every n-th training sentence (1: all 52,596).</param>
public sealed class PosSuite(bool crf, int epochs, int trainEvery) : IBenchSuite
{
    public string Name => crf ? "pos-crf" : "pos";

    public string Description => $"Brown part-of-speech tagging with minilm{(crf ? " and a CRF" : "")} (data/brown)";

    public BenchResult Run(BenchContext context)
    {
        string trainPath = context.RequireDataFile("brown", "train.conll");
        string testPath = context.RequireDataFile("brown", "test.conll");
        string run = Path.Combine(context.RepoRoot, "bench", "results", "runs", Name + (context.Quick ? "-quick" : ""));
        if (Directory.Exists(run)) Directory.Delete(run, recursive: true);
        int every = context.Quick ? Math.Max(trainEvery, 100) : trainEvery;
        string train = trainPath;
        if (every > 1)
        {
            train = Path.Combine(run + "-data", "train.conll");
            Directory.CreateDirectory(Path.GetDirectoryName(train)!);
            var sentences = File.ReadAllText(trainPath).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
            File.WriteAllText(train, string.Join("\n\n", sentences.Where((_, i) => i % every == 0)) + "\n");
        }
        var options = new FineTuneOptions
        {
            Model = "minilm", Task = "tokens", Crf = crf, Train = train, ValidationFraction = 0.05, MaxLength = 128, Out = run,
            Training = new TrainingOptions { Epochs = context.Quick ? 1 : epochs, BatchSize = 32, LearningRate = 1e-4, Seed = 42, LogEverySteps = 50 },
        };
        var summary = new FineTuneJob(options, Console.WriteLine).Run();
        using var predictor = new Predictor(summary.BestModelFolder);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var (metrics, _, count, _) = predictor.Evaluate(testPath);
        return new BenchResult
        {
            Suite = Name,
            Model = $"SharpTune minilm, per-word head{(crf ? " + CRF" : "")}, {options.Training.Epochs} epoch(s) on {(every == 1 ? "all" : $"every {every}th")} training sentence(s), batch 32, lr {options.Training.LearningRate:G3}",
            Dataset = "Brown corpus, simplified tags (data/brown)",
            Quick = context.Quick,
            TrainExamples = summary.TrainExamples,
            TestExamples = count,
            TrainSeconds = summary.SecondsPerStep * summary.Steps,
            PredictSeconds = clock.Elapsed.TotalSeconds,
            Metrics = new()
            {
                ["token_accuracy"] = metrics["token_accuracy"],
                // Test tokens whose tag never occurs in training: scored as errors (no prediction can match them).
                ["unseen_label_tokens"] = metrics.GetValueOrDefault("unseen_label_tokens"),
                ["seconds_per_step"] = summary.SecondsPerStep,
            },
        };
    }
}
