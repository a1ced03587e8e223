using SharpTune.Bench.Reporting;

namespace SharpTune.Bench.Suites;

/// <summary>Runs several suites in turn (spam: the ML.NET peer and SharpTune on the same split; all: everything).</summary>
public sealed class CompositeSuite(string name, string description, params IBenchSuite[] parts) : IBenchSuite
{
    public string Name => name;

    public string Description => description;

    public BenchResult Run(BenchContext context)
    {
        var metrics = new OrderedDictionary<string, double>();
        double train = 0, predict = 0;
        foreach (var part in parts)
        {
            Console.WriteLine($"-- {part.Name}: {part.Description}");
            var result = part.Run(context);
            ResultTable.Print(result);
            ResultWriter.Write(result, Path.Combine(context.RepoRoot, "bench", "results"));
            foreach (var (key, value) in result.Metrics) metrics[$"{part.Name}.{key}"] = value;
            train += result.TrainSeconds;
            predict += result.PredictSeconds;
        }
        return new BenchResult
        {
            Suite = Name, Model = string.Join(" + ", parts.Select(p => p.Name)), Dataset = "see the parts", Quick = context.Quick,
            TrainExamples = 0, TestExamples = 0, TrainSeconds = train, PredictSeconds = predict, Metrics = metrics,
        };
    }
}
