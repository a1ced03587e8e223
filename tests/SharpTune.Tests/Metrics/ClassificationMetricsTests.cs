using System.Text.Json;
using SharpTune.Metrics;

namespace SharpTune.Tests.Metrics;

public sealed class ClassificationMetricsTests
{
    // gold 0 0 0 1 1 2 2 2, predicted 0 0 1 1 1 0 0 0; class 2 is never predicted, class 3 never occurs.
    static readonly int[] Gold = [0, 0, 0, 1, 1, 2, 2, 2];
    static readonly int[] Predicted = [0, 0, 1, 1, 1, 0, 0, 0];
    static readonly string[] Names = ["cat", "dog", "eel", "fox"];

    [Fact]
    public void Scores_match_hand_computed_values()
    {
        var report = ClassificationMetrics.Compute(Predicted, Gold, 4, Names);

        Assert.Equal(8, report.Count);
        Assert.Equal(0.5, report.Accuracy, 12);
        // cat: 2 right of 5 predicted, 3 gold -> P 0.4, R 2/3, F1 0.5
        AssertScores(report.PerClass[0], "cat", 0.4, 2.0 / 3, 0.5, support: 3, predicted: 5);
        // dog: 2 right of 3 predicted, 2 gold -> P 2/3, R 1, F1 0.8
        AssertScores(report.PerClass[1], "dog", 2.0 / 3, 1, 0.8, support: 2, predicted: 3);
        // eel: never predicted -> precision 0, not NaN
        AssertScores(report.PerClass[2], "eel", 0, 0, 0, support: 3, predicted: 0);
        AssertScores(report.PerClass[3], "fox", 0, 0, 0, support: 0, predicted: 0);
        // Macro over the three classes that occur: fox is absent from gold and predictions.
        Assert.Equal((0.5 + 0.8 + 0) / 3, report.MacroF1, 12);
        Assert.Equal((0.4 + 2.0 / 3) / 3, report.MacroPrecision, 12);
        Assert.Equal((2.0 / 3 + 1) / 3, report.MacroRecall, 12);
        Assert.Equal((0.5 * 3 + 0.8 * 2) / 8, report.WeightedF1, 12);
        Assert.Equal([[2, 1, 0, 0], [0, 2, 0, 0], [3, 0, 0, 0], [0, 0, 0, 0]], report.ConfusionMatrix.Select(r => r.ToArray()));
    }

    static void AssertScores(LabelScores s, string label, double precision, double recall, double f1, int support, int predicted)
    {
        Assert.Equal(label, s.Label);
        Assert.Equal(precision, s.Precision, 12);
        Assert.Equal(recall, s.Recall, 12);
        Assert.Equal(f1, s.F1, 12);
        Assert.Equal(support, s.Support);
        Assert.Equal(predicted, s.Predicted);
    }

    [Fact]
    public void Accuracy_alone()
    {
        Assert.Equal(0.5, ClassificationMetrics.Accuracy(Predicted, Gold));
    }

    [Fact]
    public void Report_serialises_to_snake_case_json_and_prints_a_table()
    {
        var report = ClassificationMetrics.Compute(Predicted, Gold, 4, Names);

        using var json = JsonDocument.Parse(report.ToJson());
        var root = json.RootElement;
        Assert.Equal(0.5, root.GetProperty("accuracy").GetDouble());
        Assert.Equal(report.MacroF1, root.GetProperty("macro_f1").GetDouble());
        Assert.Equal("eel", root.GetProperty("per_class")[2].GetProperty("label").GetString());
        Assert.Equal(0, root.GetProperty("per_class")[2].GetProperty("precision").GetDouble());
        Assert.Equal(3, root.GetProperty("confusion_matrix")[2][0].GetInt32());

        string table = report.ToTable();
        Assert.Contains("accuracy 0.5000", table);
        Assert.Contains("\ndog           0.6667  1.0000  0.8000        2          3\n", table);
        Assert.Contains("\nmacro avg     0.3556  0.5556  0.4333        8\n", table);
        Assert.Contains("gold \\ predicted  cat  dog  eel  fox", table);
    }

    [Fact]
    public void Ids_default_to_numbers_when_no_names_are_given()
    {
        var report = ClassificationMetrics.Compute([1, 0], [1, 1], 2);
        Assert.Equal(["0", "1"], report.PerClass.Select(c => c.Label));
        Assert.Equal(1.0 / 3, report.MacroF1, 12); // class 0: F1 0; class 1: P 1, R 0.5, F1 2/3
    }

    [Fact]
    public void Bad_inputs_are_rejected_with_the_reason()
    {
        Assert.Contains("3 predictions but 2 gold", Assert.Throws<ArgumentException>(() => ClassificationMetrics.Compute([0, 1, 1], [0, 1], 2)).Message);
        Assert.Contains("predicted class 5 at index 1", Assert.Throws<ArgumentException>(() => ClassificationMetrics.Compute([0, 5], [0, 1], 2)).Message);
        Assert.Contains("no labels", Assert.Throws<ArgumentException>(() => ClassificationMetrics.Compute([], [], 2)).Message);
        Assert.Throws<ArgumentException>(() => ClassificationMetrics.Compute([0], [0], 2, ["only one"]));
    }
}
