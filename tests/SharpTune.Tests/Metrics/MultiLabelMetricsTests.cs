using System.Text.Json;
using SharpTune.Metrics;

namespace SharpTune.Tests.Metrics;

public sealed class MultiLabelMetricsTests
{
    [Fact]
    public void Micro_macro_and_exact_match_match_hand_computed_values()
    {
        bool[][] gold = [[true, false, true, false], [false, true, false, false], [true, true, false, false]];
        bool[][] predicted = [[true, false, false, false], [false, true, true, false], [true, true, false, false]];

        var report = MultiLabelMetrics.Compute(predicted, gold, ["a", "b", "c", "d"]);

        // Pooled: 4 right, 5 predicted, 5 gold.
        Assert.Equal(0.8, report.MicroPrecision, 12);
        Assert.Equal(0.8, report.MicroRecall, 12);
        Assert.Equal(0.8, report.MicroF1, 12);
        // Per label F1: a 1, b 1, c 0 (one gold, one wrong prediction), d 0 (never present) -> mean over 4.
        Assert.Equal([1.0, 1.0, 0.0, 0.0], report.PerLabel.Select(l => l.F1));
        Assert.Equal(0.5, report.MacroF1, 12);
        Assert.Equal(1.0 / 3, report.ExactMatch, 12);
        Assert.Equal((1, 1, 0), (report.PerLabel[2].Support, report.PerLabel[2].Predicted, report.PerLabel[2].Correct));

        using var json = JsonDocument.Parse(report.ToJson());
        Assert.Equal(0.8, json.RootElement.GetProperty("micro_f1").GetDouble(), 12);
        Assert.Contains("exact match 0.3333", report.ToTable());
    }

    [Fact]
    public void Nothing_predicted_scores_zero_not_nan()
    {
        var report = MultiLabelMetrics.Compute([[false, false]], [[true, false]]);
        Assert.Equal(0, report.MicroPrecision);
        Assert.Equal(0, report.MicroF1);
        Assert.Equal(0, report.MacroF1);
    }

    [Fact]
    public void Rows_of_different_widths_are_rejected()
    {
        var error = Assert.Throws<ArgumentException>(() => MultiLabelMetrics.Compute([[true, false], [true]], [[true, false], [true, false]]));
        Assert.Contains("example 1", error.Message);
    }
}
