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
        HeadOptions head, LabelMap? labels, IReadOnlyList<EncodedExample> data, Prediction[] predictions)
    {
        var names = labels?.Labels;
        switch (head.Kind)
        {
            case TaskKind.SingleLabel:
            {
                var report = ClassificationMetrics.Compute(predictions.Select(p => p.Labels[0]).ToList(), data.Select(e => e.ClassId).ToList(), head.NumLabels, names);
                return (new Dictionary<string, double>
                {
                    ["accuracy"] = report.Accuracy, ["macro_f1"] = report.MacroF1,
                    ["macro_precision"] = report.MacroPrecision, ["macro_recall"] = report.MacroRecall,
                }, report);
            }
            case TaskKind.MultiLabel:
            {
                bool[] Hot(IEnumerable<int> ids) { var v = new bool[head.NumLabels]; foreach (int i in ids) v[i] = true; return v; }
                var report = MultiLabelMetrics.Compute(predictions.Select(p => Hot(p.Labels)).ToArray(), data.Select(e => Hot(e.ClassIds ?? [])).ToArray(), names);
                return (new Dictionary<string, double>
                {
                    ["micro_f1"] = report.MicroF1, ["macro_f1"] = report.MacroF1, ["exact_match"] = report.ExactMatch,
                }, report);
            }
            case TaskKind.Regression:
            {
                var report = RegressionMetrics.Compute(predictions.Select(p => (double)p.Value!.Value).ToList(), data.Select(e => (double)e.Value).ToList());
                var values = new Dictionary<string, double> { ["mse"] = report.Mse, ["mae"] = report.Mae };
                if (report.Pearson is { } pearson) values["pearson"] = pearson;
                if (report.Spearman is { } spearman) values["spearman"] = spearman;
                return (values, report);
            }
            default:
            {
                var gold = data.Select(e => (IReadOnlyList<int>)(e.WordLabels ?? [])).ToList();
                var predicted = predictions.Select(p => (IReadOnlyList<int>)p.Labels).ToList();
                var report = TokenMetrics.Compute(predicted, gold, names ?? Enumerable.Range(0, head.NumLabels).Select(i => i.ToString()).ToList());
                return (TokenValues(report, names), report);
            }
        }
    }

    /// <summary>The metrics a run of this task reports at each evaluation (loss included): what <c>--metric</c> may name.</summary>
    public static IReadOnlyList<string> Names(HeadOptions head, LabelMap? labels) => head.Kind switch
    {
        TaskKind.SingleLabel => ["accuracy", "macro_f1", "macro_precision", "macro_recall", "loss"],
        TaskKind.MultiLabel => ["micro_f1", "macro_f1", "exact_match", "loss"],
        TaskKind.Regression => ["mse", "mae", "pearson", "spearman", "loss"],
        _ => labels?.Labels.Any(n => n.StartsWith("B-", StringComparison.Ordinal)) == true
            ? ["token_accuracy", "entity_f1", "entity_precision", "entity_recall", "loss"]
            : ["token_accuracy", "loss"],
    };

    /// <summary>Token accuracy, and entity scores when the tag set is BIO-style (NER), where they mean something.</summary>
    public static Dictionary<string, double> TokenValues(TokenReport report, IReadOnlyList<string>? tagNames)
    {
        var values = new Dictionary<string, double> { ["token_accuracy"] = report.TokenAccuracy };
        if (tagNames?.Any(n => n.StartsWith("B-", StringComparison.Ordinal)) == true)
        {
            values["entity_f1"] = report.F1;
            values["entity_precision"] = report.Precision;
            values["entity_recall"] = report.Recall;
        }
        return values;
    }
}
