using System.Runtime.InteropServices;

namespace SharpTune.Bench.Reporting;

/// <summary>What a suite measured; written as bench/results/&lt;suite&gt;.json.</summary>
public sealed record BenchResult
{
    public required string Suite { get; init; }
    public required string Model { get; init; }
    public required string Dataset { get; init; }
    public required bool Quick { get; init; }
    public required int TrainExamples { get; init; }
    public required int TestExamples { get; init; }
    public required double TrainSeconds { get; init; }
    public required double PredictSeconds { get; init; }

    /// <summary>Headline scores in display order, named in snake_case (accuracy, f1, hard_ham_accuracy, ...).</summary>
    public required OrderedDictionary<string, double> Metrics { get; init; }

    public ConfusionMatrix? Confusion { get; init; }

    /// <summary>Accuracy on each group of the test split (for SpamAssassin: easy-ham-1, hard-ham-1, spam-2, ...).</summary>
    public IReadOnlyList<GroupAccuracy> Groups { get; init; } = [];

    public MachineInfo Machine { get; init; } = MachineInfo.Current();
    public DateTimeOffset FinishedAt { get; init; } = DateTimeOffset.UtcNow;
}

public sealed record GroupAccuracy(string Group, int Examples, int Correct)
{
    public double Accuracy => Examples == 0 ? 0 : (double)Correct / Examples;
}

/// <summary>Counts for a binary task; the positive class is the one a detector looks for (spam).</summary>
public sealed record ConfusionMatrix(string PositiveClass, int TruePositives, int FalsePositives, int TrueNegatives, int FalseNegatives);

public sealed record MachineInfo(string Os, string Architecture, int LogicalCores, string Runtime)
{
    public static MachineInfo Current() => new(
        RuntimeInformation.OSDescription,
        RuntimeInformation.ProcessArchitecture.ToString(),
        Environment.ProcessorCount,
        RuntimeInformation.FrameworkDescription);
}
