using System.Text;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>The summary printed at the end of a run.</summary>
public static class RunReport
{
    public static string Format(RunSummary s)
    {
        var text = new StringBuilder();
        text.AppendLine("run summary");
        text.AppendLine($"  run folder        {s.RunFolder}");
        text.AppendLine($"  best model        {s.BestModelFolder}{(s.BestStep is { } step ? $" (step {step}, {s.BestMetric:F4})" : "")}");
        text.AppendLine($"  {s.Parameters}");
        text.AppendLine($"  examples          {s.TrainExamples} training, {s.ValidationExamples} validation, {s.SkippedRows} skipped rows, {s.Truncated} truncated");
        text.AppendLine($"  steps             {s.Steps}, {s.SecondsPerStep * 1000:F0} ms per step");
        text.AppendLine($"  peak memory       {s.PeakMemoryBytes / (1024.0 * 1024.0):F0} MiB");
        if (s.AdapterBytes > 0) text.AppendLine($"  adapter on disk   {s.AdapterBytes / 1024.0:F1} KiB");
        text.Append("  final validation  ");
        text.Append(string.Join(", ", s.FinalMetrics.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key} {kv.Value:F4}")));
        return text.ToString();
    }
}
