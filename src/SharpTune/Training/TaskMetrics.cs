using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.Metrics;

namespace SharpTune.Training;

/// <summary>The validation metrics of each task, as flat name → value pairs (for logs, early stopping and JSON).</summary>
public static class TaskMetrics
{
    public static Func<IReadOnlyList<EncodedExample>, Prediction[], IReadOnlyDictionary<string, double>> For(HeadOptions head, LabelMap? labels) =>
        (data, predictions) => Compute(head, labels, data, predictions).Values;

    /// <summary>The metrics and the full report (per class, confusion matrix) of predictions against the data's labels.</summary>
    public static (IReadOnlyDictionary<string, double> Values, IMetricReport Report) Compute(
        HeadOptions head, LabelMap? labels, IReadOnlyList<EncodedExample> data, Prediction[] predictions) =>
        TaskHeads.Create(head).Score(data, predictions, labels?.Labels);

    /// <summary>The metrics a run of this task reports at each evaluation (loss included): what <c>--metric</c> may name.</summary>
    public static IReadOnlyList<string> Names(HeadOptions head, LabelMap? labels) => [.. TaskHeads.Create(head).MetricNames(labels?.Labels), "loss"];

    /// <summary>Token accuracy, and entity scores when the tag set is BIO-style (NER), where they mean something.</summary>
    public static Dictionary<string, double> TokenValues(TokenReport report, IReadOnlyList<string>? tagNames) => WordHead.TokenValues(report, tagNames);
}
