namespace SharpTune.Metrics;

/// <summary>Single-label classification scores.</summary>
/// <param name="Count">Number of examples.</param>
/// <param name="MacroF1">Unweighted mean over the classes that occur in the gold labels or the
/// predictions (sklearn's default): a class absent from both has no score to average.</param>
/// <param name="WeightedF1">Mean of the per-class F1 weighted by gold support.</param>
/// <param name="PerClass">Every class 0..numClasses-1, in id order.</param>
/// <param name="ConfusionMatrix">[gold][predicted] counts.</param>
public sealed record ClassificationReport(
    int Count,
    double Accuracy,
    double MacroPrecision,
    double MacroRecall,
    double MacroF1,
    double WeightedF1,
    IReadOnlyList<LabelScores> PerClass,
    IReadOnlyList<IReadOnlyList<int>> ConfusionMatrix) : IMetricReport
{
    public string ToJson() => ReportFormat.Json(this);

    public string ToTable()
    {
        string summary = $"accuracy {ReportFormat.Number(Accuracy)}  macro F1 {ReportFormat.Number(MacroF1)}  " +
                         $"weighted F1 {ReportFormat.Number(WeightedF1)}  examples {Count}\n\n";
        var rows = ReportFormat.ScoreRows(PerClass).Append(
            ["macro avg", ReportFormat.Number(MacroPrecision), ReportFormat.Number(MacroRecall), ReportFormat.Number(MacroF1), ReportFormat.Count(Count), ""]);
        var names = PerClass.Select(c => c.Label).ToArray();
        var matrix = ConfusionMatrix.Select((row, g) => (IReadOnlyList<string>)[names[g], .. row.Select(ReportFormat.Count)]);
        return summary + ReportFormat.Table(ReportFormat.ScoreHeader, rows)
             + "\nconfusion matrix (rows: gold, columns: predicted)\n"
             + ReportFormat.Table(["gold \\ predicted", .. names], matrix);
    }
}

public static class ClassificationMetrics
{
    /// <summary>Scores integer class predictions against gold classes.</summary>
    /// <param name="labelNames">Class names for the report; defaults to the ids.</param>
    /// <exception cref="ArgumentException">Lengths differ, no examples, or a class id outside 0..numClasses-1.</exception>
    public static ClassificationReport Compute(IReadOnlyList<int> predictions, IReadOnlyList<int> gold, int numClasses, IReadOnlyList<string>? labelNames = null)
    {
        if (labelNames is not null && labelNames.Count != numClasses)
            throw new ArgumentException($"{labelNames.Count} label names for {numClasses} classes", nameof(labelNames));
        var matrix = ConfusionMatrix(predictions, gold, numClasses);
        var perClass = new LabelScores[numClasses];
        int correct = 0;
        for (int c = 0; c < numClasses; c++)
        {
            int predicted = 0, support = 0;
            for (int k = 0; k < numClasses; k++)
            {
                predicted += matrix[k][c];
                support += matrix[c][k];
            }
            correct += matrix[c][c];
            perClass[c] = LabelScores.FromCounts(labelNames?[c] ?? c.ToString(System.Globalization.CultureInfo.InvariantCulture), matrix[c][c], predicted, support);
        }
        var present = perClass.Where(s => s.Support > 0 || s.Predicted > 0).ToArray();
        int n = gold.Count;
        return new ClassificationReport(
            n,
            (double)correct / n,
            present.Average(s => s.Precision),
            present.Average(s => s.Recall),
            present.Average(s => s.F1),
            perClass.Sum(s => s.F1 * s.Support) / n,
            perClass,
            matrix);
    }

    public static double Accuracy(IReadOnlyList<int> predictions, IReadOnlyList<int> gold)
    {
        ReportFormat.SameLength(predictions.Count, gold.Count, "labels");
        return (double)Enumerable.Range(0, gold.Count).Count(i => predictions[i] == gold[i]) / gold.Count;
    }

    /// <summary>Counts as [gold][predicted].</summary>
    public static int[][] ConfusionMatrix(IReadOnlyList<int> predictions, IReadOnlyList<int> gold, int numClasses)
    {
        if (numClasses <= 0) throw new ArgumentOutOfRangeException(nameof(numClasses), numClasses, "need at least one class");
        ReportFormat.SameLength(predictions.Count, gold.Count, "labels");
        var matrix = new int[numClasses][];
        for (int c = 0; c < numClasses; c++) matrix[c] = new int[numClasses];
        for (int i = 0; i < gold.Count; i++)
        {
            Check(gold[i], numClasses, i, "gold");
            Check(predictions[i], numClasses, i, "predicted");
            matrix[gold[i]][predictions[i]]++;
        }
        return matrix;
    }

    static void Check(int id, int numClasses, int index, string which)
    {
        if (id < 0 || id >= numClasses)
            throw new ArgumentException($"{which} class {id} at index {index} is outside 0..{numClasses - 1}");
    }
}
