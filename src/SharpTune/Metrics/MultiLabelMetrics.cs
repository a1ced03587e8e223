namespace SharpTune.Metrics;

/// <summary>Multi-label scores over label indicator arrays.</summary>
/// <param name="MicroF1">F1 of the counts pooled over all labels.</param>
/// <param name="MacroF1">Unweighted mean over every label, including labels absent from both gold and
/// predictions (which score 0), as sklearn does for indicator matrices.</param>
/// <param name="ExactMatch">Fraction of examples whose whole label set is right (subset accuracy).</param>
public sealed record MultiLabelReport(
    int Count,
    double MicroPrecision,
    double MicroRecall,
    double MicroF1,
    double MacroF1,
    double ExactMatch,
    IReadOnlyList<LabelScores> PerLabel) : IMetricReport
{
    public string ToJson() => ReportFormat.Json(this);

    public string ToTable() =>
        $"micro F1 {ReportFormat.Number(MicroF1)} (precision {ReportFormat.Number(MicroPrecision)}, recall {ReportFormat.Number(MicroRecall)})  " +
        $"macro F1 {ReportFormat.Number(MacroF1)}  exact match {ReportFormat.Number(ExactMatch)}  examples {Count}\n\n" +
        ReportFormat.Table(ReportFormat.ScoreHeader, ReportFormat.ScoreRows(PerLabel));
}

public static class MultiLabelMetrics
{
    /// <summary>Scores predicted label sets against gold ones; row i, column j says whether example i has label j.</summary>
    /// <exception cref="ArgumentException">Lengths differ, no examples, or rows of different widths.</exception>
    public static MultiLabelReport Compute(IReadOnlyList<IReadOnlyList<bool>> predictions, IReadOnlyList<IReadOnlyList<bool>> gold, IReadOnlyList<string>? labelNames = null)
    {
        ReportFormat.SameLength(predictions.Count, gold.Count, "examples");
        int labels = gold[0].Count;
        if (labelNames is not null && labelNames.Count != labels)
            throw new ArgumentException($"{labelNames.Count} label names for {labels} labels", nameof(labelNames));
        var correct = new int[labels];
        var predicted = new int[labels];
        var support = new int[labels];
        int exact = 0;
        for (int i = 0; i < gold.Count; i++)
        {
            if (gold[i].Count != labels || predictions[i].Count != labels)
                throw new ArgumentException($"example {i} has {predictions[i].Count} predicted and {gold[i].Count} gold labels; expected {labels}");
            bool same = true;
            for (int j = 0; j < labels; j++)
            {
                bool p = predictions[i][j], g = gold[i][j];
                if (p) predicted[j]++;
                if (g) support[j]++;
                if (p && g) correct[j]++;
                same &= p == g;
            }
            if (same) exact++;
        }
        var perLabel = Enumerable.Range(0, labels)
            .Select(j => LabelScores.FromCounts(labelNames?[j] ?? j.ToString(System.Globalization.CultureInfo.InvariantCulture), correct[j], predicted[j], support[j]))
            .ToArray();
        var micro = LabelScores.FromCounts("micro", correct.Sum(), predicted.Sum(), support.Sum());
        return new MultiLabelReport(
            gold.Count, micro.Precision, micro.Recall, micro.F1,
            labels == 0 ? 0 : perLabel.Average(s => s.F1),
            (double)exact / gold.Count,
            perLabel);
    }
}
