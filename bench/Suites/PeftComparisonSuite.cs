using SharpTune.Bench.Reporting;

namespace SharpTune.Bench.Suites;

/// <summary>
/// Every method on the same SpamAssassin subset and the full test split: accuracy, F1, trainable
/// parameters, time per step and peak memory side by side, plus a plot of accuracy against trainable
/// parameters. Each method runs in a child process of its own (suite peft-METHOD), so the peak memory
/// reported for it is that method's alone.
/// </summary>
public sealed class PeftComparisonSuite : IBenchSuite
{
    /// <summary>Method, epochs and learning rate (null: the method's default from METHODS.md).</summary>
    public static readonly (string Method, int Epochs, double? LearningRate)[] Runs =
    [
        ("ptuning-v2", 3, null), ("prefix", 3, null), ("prompt", 3, null), ("ptuning", 3, null),
        ("lora", 3, null), ("ia3", 3, null), ("bitfit", 3, null), ("head", 3, 1e-3), ("full", 3, 1e-4),
    ];

    public const int TrainEvery = 12;

    /// <summary>The suite that runs one method of the comparison, in its own process.</summary>
    public static IEnumerable<IBenchSuite> MethodSuites() =>
        Runs.Select(r => (IBenchSuite)new SharpTuneSpamSuite(r.Method, r.Epochs, r.LearningRate, TrainEvery, $"peft-{r.Method}"));

    public string Name => "peft";

    public string Description => $"every method on every {TrainEvery}th SpamAssassin training message, scored on the full test split";

    /// <summary>Runs one suite in a new process of this program and reads back the result it wrote.</summary>
    internal static BenchResult RunChild(string suite, BenchContext context)
    {
        var start = new System.Diagnostics.ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(typeof(PeftComparisonSuite).Assembly.Location);
        start.ArgumentList.Add(suite);
        if (context.Quick) start.ArgumentList.Add("--quick");
        using var child = System.Diagnostics.Process.Start(start)!;
        child.WaitForExit();
        if (child.ExitCode != 0) throw new InvalidOperationException($"suite {suite} failed (exit {child.ExitCode})");
        return ResultWriter.Read(ResultWriter.PathOf(Path.Combine(context.RepoRoot, "bench", "results"), suite, context.Quick));
    }

    public BenchResult Run(BenchContext context)
    {
        var metrics = new OrderedDictionary<string, double>();
        var rows = new List<(string Method, BenchResult Result)>();
        foreach (var (method, _, _) in Runs)
        {
            var result = RunChild($"peft-{method}", context);
            rows.Add((method, result));
            foreach (string key in new[] { "accuracy", "f1", "trainable_parameters", "trainable_fraction", "seconds_per_step", "peak_memory_mib" })
                metrics[$"{method}_{key}"] = result.Metrics[key];
        }

        var plot = new ScottPlot.Plot();
        foreach (var (method, result) in rows)
        {
            var point = plot.Add.Scatter(new[] { Math.Log10(result.Metrics["trainable_parameters"]) }, new[] { 100 * result.Metrics["accuracy"] });
            point.LegendText = method;
            point.MarkerSize = 10;
        }
        Plots.Save(plot, context.RepoRoot, "peft-accuracy-vs-parameters.png", "trainable parameters (log10)", "test accuracy (%)",
            $"SpamAssassin, minilm, every {TrainEvery}th training message");

        return new BenchResult
        {
            Suite = Name,
            Model = "SharpTune minilm, every method",
            Dataset = $"SpamAssassin (every {TrainEvery}th training message; full test split)",
            Quick = context.Quick,
            TrainExamples = rows[0].Result.TrainExamples,
            TestExamples = rows[0].Result.TestExamples,
            TrainSeconds = rows.Sum(r => r.Result.TrainSeconds),
            PredictSeconds = rows.Sum(r => r.Result.PredictSeconds),
            Metrics = metrics,
        };
    }
}
