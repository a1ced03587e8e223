using System.Diagnostics;
using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers;
using SharpTune.Bench.Data;
using SharpTune.Bench.Reporting;

namespace SharpTune.Bench.Suites;

/// <summary>
/// The classical .NET peer for spam detection: ML.NET's FeaturizeText (word uni/bigrams and character
/// trigrams, L2-normalised) followed by SdcaLogisticRegression, on data/spam. Everything is at ML.NET's
/// defaults except a cache checkpoint and a single SDCA thread. Quick mode trains on every fourth
/// training message.
/// </summary>
public sealed class MlNetSpamSuite : IBenchSuite
{
    const int Seed = 1;

    public string Name => "mlnet-spam";

    public string Description => "ML.NET FeaturizeText + SdcaLogisticRegression on SpamAssassin (data/spam)";

    sealed class Row
    {
        public string Text { get; set; } = "";
        public bool Label { get; set; }
    }

    sealed class Prediction
    {
        public bool PredictedLabel { get; set; }
    }

    public BenchResult Run(BenchContext context)
    {
        List<SpamExample> train = SpamExample.ReadCsv(context.RequireDataFile("spam", "train.csv"));
        List<SpamExample> test = SpamExample.ReadCsv(context.RequireDataFile("spam", "test.csv"));
        if (context.Quick) train = train.Where((_, i) => i % 4 == 0).ToList();

        var ml = new MLContext(Seed);
        IDataView trainData = ml.Data.LoadFromEnumerable(train.Select(ToRow));
        IDataView testData = ml.Data.LoadFromEnumerable(test.Select(ToRow));
        // The cache checkpoint keeps the featurized rows in memory: SDCA makes many passes over the data,
        // and without it every pass featurizes all the text again (about 20 times slower).
        var pipeline = ml.Transforms.Text.FeaturizeText("Features", nameof(Row.Text))
            .AppendCacheCheckpoint(ml)
            .Append(ml.BinaryClassification.Trainers.SdcaLogisticRegression(new SdcaLogisticRegressionBinaryTrainer.Options
            {
                LabelColumnName = nameof(Row.Label),
                FeatureColumnName = "Features",
                // SDCA's result depends on how many threads share the updates (4 threads move F1 by
                // 0.001); one thread makes the numbers the same on every machine.
                NumberOfThreads = 1,
            }));

        var trainClock = Stopwatch.StartNew();
        var model = pipeline.Fit(trainData);
        trainClock.Stop();

        var predictClock = Stopwatch.StartNew();
        IDataView scored = model.Transform(testData);
        List<Prediction> predictions = ml.Data.CreateEnumerable<Prediction>(scored, reuseRowObject: false).ToList();
        predictClock.Stop();

        var scores = BinaryClassificationScores.Compute("spam",
            test.Zip(predictions, (example, p) => (example.IsSpam, p.PredictedLabel, example.Group)));
        CalibratedBinaryClassificationMetrics mlnet = ml.BinaryClassification.Evaluate(scored, labelColumnName: nameof(Row.Label));
        // Our counting and ML.NET's must agree; a mismatch would mean rows were misaligned.
        if (Math.Abs(mlnet.Accuracy - scores.Accuracy) > 1e-9)
            throw new InvalidOperationException($"accuracy mismatch: ML.NET {mlnet.Accuracy}, counted {scores.Accuracy}.");

        return new BenchResult
        {
            Suite = Name,
            Model = $"ML.NET {MlNetVersion} FeaturizeText + SdcaLogisticRegression (defaults; 1 thread, seed {Seed})",
            Dataset = "SpamAssassin public corpus (data/spam)",
            Quick = context.Quick,
            TrainExamples = train.Count,
            TestExamples = test.Count,
            TrainSeconds = trainClock.Elapsed.TotalSeconds,
            PredictSeconds = predictClock.Elapsed.TotalSeconds,
            Metrics = new()
            {
                ["accuracy"] = scores.Accuracy,
                ["precision"] = scores.Precision,
                ["recall"] = scores.Recall,
                ["f1"] = scores.F1,
                ["hard_ham_accuracy"] = scores.GroupAccuracy("hard-ham-1"),
                ["auc"] = mlnet.AreaUnderRocCurve,
            },
            Confusion = scores.Confusion,
            Groups = scores.Groups,
        };
    }

    static string MlNetVersion =>
        typeof(MLContext).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "?";

    static Row ToRow(SpamExample example) => new() { Text = example.Text, Label = example.IsSpam };
}
