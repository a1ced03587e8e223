using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SharpTune.Metrics;

/// <summary>A metric result: serialisable for logs and checkpoints, printable for people.</summary>
public interface IMetricReport
{
    /// <summary>Indented JSON with snake_case names (<c>macro_f1</c>), the convention of HF's metric logs.
    /// No value is ever NaN or infinite (System.Text.Json rejects those); undefined values are null.</summary>
    string ToJson();

    /// <summary>An aligned plain-text table for the console.</summary>
    string ToTable();
}

/// <summary>Precision, recall and F1 of one class, label or entity type.</summary>
/// <param name="Support">How many gold items have this label.</param>
/// <param name="Predicted">How many predicted items have this label.</param>
/// <param name="Correct">How many predicted items are right (true positives).</param>
public sealed record LabelScores(string Label, double Precision, double Recall, double F1, int Support, int Predicted, int Correct)
{
    /// <summary>Scores from counts. A ratio with a zero denominator is 0, not NaN (sklearn's
    /// <c>zero_division=0</c>): a class never predicted has precision 0, never seen has recall 0.</summary>
    internal static LabelScores FromCounts(string label, int correct, int predicted, int support)
    {
        double precision = Ratio(correct, predicted), recall = Ratio(correct, support);
        return new LabelScores(label, precision, recall, F1Of(precision, recall), support, predicted, correct);
    }

    internal static double Ratio(double numerator, double denominator) => denominator == 0 ? 0 : numerator / denominator;

    internal static double F1Of(double precision, double recall) => Ratio(2 * precision * recall, precision + recall);
}

/// <summary>Shared JSON options and table layout for the reports.</summary>
internal static class ReportFormat
{
    static readonly JsonSerializerOptions Options = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static string Json<T>(T report) => JsonSerializer.Serialize(report, Options);

    public static string Number(double value) => value.ToString("0.0000", CultureInfo.InvariantCulture);

    public static string Number(double? value) => value is { } v ? Number(v) : "n/a";

    public static string Count(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>The per-label rows shared by every report that has them.</summary>
    public static IEnumerable<string[]> ScoreRows(IEnumerable<LabelScores> scores) => scores.Select(s =>
        new[] { s.Label, Number(s.Precision), Number(s.Recall), Number(s.F1), Count(s.Support), Count(s.Predicted) });

    public static readonly string[] ScoreHeader = ["label", "precision", "recall", "f1", "support", "predicted"];

    /// <summary>Columns padded to their widest cell: the first left-aligned (names), the rest right-aligned (numbers).</summary>
    public static string Table(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = new List<IReadOnlyList<string>> { header };
        all.AddRange(rows);
        var widths = Enumerable.Range(0, header.Count).Select(c => all.Max(r => c < r.Count ? r[c].Length : 0)).ToArray();
        var text = new StringBuilder();
        var line = new StringBuilder();
        foreach (var row in all)
        {
            line.Clear();
            for (int c = 0; c < row.Count; c++)
            {
                if (c > 0) line.Append("  ");
                line.Append(c == 0 ? row[c].PadRight(widths[c]) : row[c].PadLeft(widths[c]));
            }
            text.Append(line.ToString().TrimEnd()).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>Checks two parallel inputs have the same, non-zero length.</summary>
    public static void SameLength(int predictions, int gold, string what)
    {
        if (predictions != gold) throw new ArgumentException($"{predictions} predictions but {gold} gold {what}");
        if (gold == 0) throw new ArgumentException($"no {what} to score");
    }
}
