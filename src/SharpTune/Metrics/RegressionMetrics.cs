namespace SharpTune.Metrics;

/// <summary>Regression scores.</summary>
/// <param name="Pearson">Null when undefined: when either side is constant the correlation is 0/0.
/// Null, not NaN, because NaN cannot be written as JSON; not 0, because 0 would claim "no correlation".</param>
/// <param name="Spearman">Pearson correlation of the ranks (ties share their average rank); null when undefined.</param>
public sealed record RegressionReport(int Count, double Mse, double Rmse, double Mae, double? Pearson, double? Spearman) : IMetricReport
{
    public string ToJson() => ReportFormat.Json(this);

    public string ToTable() => ReportFormat.Table(
        ["metric", "value"],
        [
            ["mse", ReportFormat.Number(Mse)], ["rmse", ReportFormat.Number(Rmse)], ["mae", ReportFormat.Number(Mae)],
            ["pearson", ReportFormat.Number(Pearson)], ["spearman", ReportFormat.Number(Spearman)], ["examples", ReportFormat.Count(Count)],
        ]);
}

public static class RegressionMetrics
{
    /// <exception cref="ArgumentException">Lengths differ, no examples, or a NaN/infinite value.</exception>
    public static RegressionReport Compute(IReadOnlyList<double> predictions, IReadOnlyList<double> gold)
    {
        double mse = MeanSquaredError(predictions, gold);
        double mae = Enumerable.Range(0, gold.Count).Average(i => Math.Abs(predictions[i] - gold[i]));
        return new RegressionReport(gold.Count, mse, Math.Sqrt(mse), mae, Pearson(predictions, gold), Spearman(predictions, gold));
    }

    public static double MeanSquaredError(IReadOnlyList<double> predictions, IReadOnlyList<double> gold)
    {
        Check(predictions, gold);
        return Enumerable.Range(0, gold.Count).Average(i => (predictions[i] - gold[i]) * (predictions[i] - gold[i]));
    }

    /// <summary>Pearson's r; null when either input is constant (including a single example).</summary>
    public static double? Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        Check(x, y);
        double meanX = x.Average(), meanY = y.Average();
        double sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < x.Count; i++)
        {
            double dx = x[i] - meanX, dy = y[i] - meanY;
            sxy += dx * dy;
            sxx += dx * dx;
            syy += dy * dy;
        }
        if (sxx == 0 || syy == 0) return null;
        // Rounding can push |r| a hair past 1 for perfectly correlated data.
        return Math.Clamp(sxy / Math.Sqrt(sxx * syy), -1, 1);
    }

    /// <summary>Spearman's rho: Pearson of the average ranks, so ties are handled as scipy does.</summary>
    public static double? Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        Check(x, y);
        return Pearson(AverageRanks(x), AverageRanks(y));
    }

    /// <summary>1-based ranks; a run of equal values all get the mean of the ranks they span.</summary>
    internal static double[] AverageRanks(IReadOnlyList<double> values)
    {
        var order = Enumerable.Range(0, values.Count).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Count];
        for (int start = 0; start < order.Length;)
        {
            int end = start + 1;
            while (end < order.Length && values[order[end]] == values[order[start]]) end++;
            double rank = (start + 1 + end) / 2.0; // mean of ranks start+1 .. end
            for (int k = start; k < end; k++) ranks[order[k]] = rank;
            start = end;
        }
        return ranks;
    }

    static void Check(IReadOnlyList<double> predictions, IReadOnlyList<double> gold)
    {
        ReportFormat.SameLength(predictions.Count, gold.Count, "values");
        for (int i = 0; i < gold.Count; i++)
            if (!double.IsFinite(predictions[i]) || !double.IsFinite(gold[i]))
                throw new ArgumentException($"value at index {i} is not a finite number (prediction {predictions[i]}, gold {gold[i]})");
    }
}
