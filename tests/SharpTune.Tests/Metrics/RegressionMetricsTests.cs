using System.Text.Json;
using SharpTune.Metrics;

namespace SharpTune.Tests.Metrics;

public sealed class RegressionMetricsTests
{
    [Fact]
    public void Errors_and_correlations_match_hand_computed_values()
    {
        double[] predicted = [1, 2, 3, 4];
        double[] gold = [2, 2, 4, 5];

        var report = RegressionMetrics.Compute(predicted, gold);

        Assert.Equal(0.75, report.Mse, 12);            // (1 + 0 + 1 + 1) / 4
        Assert.Equal(Math.Sqrt(0.75), report.Rmse, 12);
        Assert.Equal(0.75, report.Mae, 12);
        Assert.Equal(5.5 / Math.Sqrt(5 * 6.75), report.Pearson!.Value, 12);
        // Gold ranks with the tie averaged: 1.5 1.5 3 4 -> rho = 4.5 / sqrt(5 * 4.5) (scipy: 0.9486833)
        Assert.Equal(4.5 / Math.Sqrt(5 * 4.5), report.Spearman!.Value, 12);
        Assert.Equal(0.9486833, report.Spearman.Value, 6);
    }

    [Fact]
    public void Spearman_with_ties_on_both_sides()
    {
        // Ranks 1.5 1.5 3 4 and 4 1.5 1.5 3: covariance -0.25, both sums of squares 4.5.
        Assert.Equal(-0.25 / 4.5, RegressionMetrics.Spearman([1, 1, 2, 3], [3, 1, 1, 2])!.Value, 12);
    }

    [Fact]
    public void Average_ranks_share_the_mean_of_the_ranks_they_span()
    {
        Assert.Equal([3.0, 1.0, 3.0, 3.0, 5.0], RegressionMetrics.AverageRanks([7, 1, 7, 7, 9]));
    }

    [Fact]
    public void Constant_input_gives_null_correlation_and_valid_json()
    {
        var report = RegressionMetrics.Compute([2, 2, 2], [1, 2, 3]);

        Assert.Null(report.Pearson);
        Assert.Null(report.Spearman);
        using var json = JsonDocument.Parse(report.ToJson());
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("pearson").ValueKind);
        Assert.Contains("n/a", report.ToTable());
    }

    [Fact]
    public void Perfect_correlation_is_exactly_one()
    {
        Assert.Equal(1.0, RegressionMetrics.Pearson([0.1, 0.2, 0.3], [10, 20, 30]));
        Assert.Equal(-1.0, RegressionMetrics.Spearman([1, 2, 3], [9, 4, 1]));
    }

    [Fact]
    public void Non_finite_values_are_rejected()
    {
        Assert.Contains("index 1", Assert.Throws<ArgumentException>(() => RegressionMetrics.Compute([1, double.NaN], [1, 2])).Message);
    }
}
