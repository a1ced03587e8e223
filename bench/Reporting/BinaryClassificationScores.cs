namespace SharpTune.Bench.Reporting;

/// <summary>
/// Accuracy, precision, recall and F1 of the positive class, and accuracy per group, computed from
/// (actual, predicted, group) triples so every suite scores the same way whatever produced the predictions.
/// </summary>
public sealed record BinaryClassificationScores(ConfusionMatrix Confusion, IReadOnlyList<GroupAccuracy> Groups)
{
    public int Total => Confusion.TruePositives + Confusion.FalsePositives + Confusion.TrueNegatives + Confusion.FalseNegatives;
    public double Accuracy => Ratio(Confusion.TruePositives + Confusion.TrueNegatives, Total);
    public double Precision => Ratio(Confusion.TruePositives, Confusion.TruePositives + Confusion.FalsePositives);
    public double Recall => Ratio(Confusion.TruePositives, Confusion.TruePositives + Confusion.FalseNegatives);
    public double F1 => Precision + Recall == 0 ? 0 : 2 * Precision * Recall / (Precision + Recall);

    public double GroupAccuracy(string group) =>
        Groups.FirstOrDefault(g => g.Group == group)?.Accuracy ?? throw new ArgumentException($"no examples in group '{group}'.", nameof(group));

    public static BinaryClassificationScores Compute(string positiveClass, IEnumerable<(bool Actual, bool Predicted, string Group)> outcomes)
    {
        int tp = 0, fp = 0, tn = 0, fn = 0;
        var groups = new SortedDictionary<string, (int Examples, int Correct)>(StringComparer.Ordinal);
        foreach ((bool actual, bool predicted, string group) in outcomes)
        {
            switch (actual, predicted)
            {
                case (true, true): tp++; break;
                case (false, true): fp++; break;
                case (false, false): tn++; break;
                case (true, false): fn++; break;
            }
            (int examples, int correct) = groups.GetValueOrDefault(group);
            groups[group] = (examples + 1, correct + (actual == predicted ? 1 : 0));
        }
        return new BinaryClassificationScores(
            new ConfusionMatrix(positiveClass, tp, fp, tn, fn),
            groups.Select(g => new GroupAccuracy(g.Key, g.Value.Examples, g.Value.Correct)).ToList());
    }

    static double Ratio(int numerator, int denominator) => denominator == 0 ? 0 : (double)numerator / denominator;
}
