using System.Globalization;
using System.Text;
using System.Text.Json;
using SharpTune.Checkpoints;

namespace SharpTune.Inference;

/// <summary>
/// Predictions as a file: JSON lines (source, input, prediction, probabilities), or CSV (source, input, prediction,
/// score) when the path ends in .csv. Written atomically: a reader never sees half a file.
/// </summary>
public static class PredictionWriter
{
    public static void Write(string path, IReadOnlyList<LabeledPrediction> predictions) => AtomicFile.Write(path, stream =>
    {
        using var writer = new StreamWriter(stream, new UTF8Encoding(false), leaveOpen: true);
        if (path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
        {
            writer.WriteLine("source,input,prediction,score");
            foreach (var p in predictions)
                writer.WriteLine(string.Join(",", Csv(p.Source), Csv(p.Input), Csv(Label(p)), Score(p)));
        }
        else
        {
            foreach (var p in predictions) writer.WriteLine(JsonLine(p));
        }
    });

    /// <summary>One prediction as a JSON object on one line: the value for regression, else the labels.</summary>
    public static string JsonLine(LabeledPrediction p) => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["source"] = p.Source,
        ["input"] = p.Input,
        ["prediction"] = p.Value is { } v ? v : p.Labels,
        ["probabilities"] = p.Probabilities,
    });

    /// <summary>The value, or the labels: words' tags separated by spaces, several classes of a text by |.</summary>
    static string Label(LabeledPrediction p) =>
        p.Value is { } value ? value.ToString("R", CultureInfo.InvariantCulture) : string.Join(p.Labels.Count > 1 && p.Probabilities is null ? " " : "|", p.Labels);

    /// <summary>The probability of a single predicted class; empty otherwise.</summary>
    static string Score(LabeledPrediction p) =>
        p.Probabilities is { } probabilities && p.Labels.Count == 1 ? probabilities[p.Labels[0]].ToString("F6", CultureInfo.InvariantCulture) : "";

    static string Csv(string field) => field.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? $"\"{field.Replace("\"", "\"\"")}\"" : field;
}
