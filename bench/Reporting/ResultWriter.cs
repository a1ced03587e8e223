using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SharpTune.Bench.Reporting;

public static class ResultWriter
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        // Keeps '+' and non-ASCII readable in the file; it is never embedded in HTML.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>&lt;dir&gt;/&lt;suite&gt;.json, or &lt;suite&gt;.quick.json for a quick run so it never replaces a full one.</summary>
    public static string PathOf(string directory, string suite, bool quick) => Path.Combine(directory, suite + (quick ? ".quick" : "") + ".json");

    /// <summary>Writes the result to <see cref="PathOf"/>; returns the path.</summary>
    public static string Write(BenchResult result, string directory)
    {
        Directory.CreateDirectory(directory);
        string path = PathOf(directory, result.Suite, result.Quick);
        File.WriteAllText(path, JsonSerializer.Serialize(result, Options) + "\n");
        return path;
    }

    /// <summary>A result <see cref="Write"/> wrote.</summary>
    public static BenchResult Read(string path) =>
        JsonSerializer.Deserialize<BenchResult>(File.ReadAllText(path), Options) ?? throw new InvalidDataException($"{path}: no bench result");
}

/// <summary>Prints a result as plain aligned text.</summary>
public static class ResultTable
{
    public static void Print(BenchResult result)
    {
        Console.WriteLine();
        Console.WriteLine($"{result.Model} on {result.Dataset}{(result.Quick ? " (quick)" : "")}");
        Console.WriteLine($"  train {result.TrainExamples} examples in {result.TrainSeconds:F1} s, test {result.TestExamples} examples predicted in {result.PredictSeconds:F2} s");
        Console.WriteLine();
        Console.WriteLine($"  {"metric",-20} {"value",8}");
        Console.WriteLine($"  {new string('-', 20)} {new string('-', 8)}");
        foreach ((string name, double value) in result.Metrics) Console.WriteLine($"  {name,-20} {value,8:F4}");
        if (result.Confusion is { } c)
            Console.WriteLine($"\n  confusion (positive = {c.PositiveClass}): TP {c.TruePositives}, FP {c.FalsePositives}, TN {c.TrueNegatives}, FN {c.FalseNegatives}");
        if (result.Groups.Count == 0) return;
        Console.WriteLine();
        Console.WriteLine($"  {"test group",-20} {"examples",8} {"correct",8} {"accuracy",8}");
        Console.WriteLine($"  {new string('-', 20)} {new string('-', 8)} {new string('-', 8)} {new string('-', 8)}");
        foreach (GroupAccuracy g in result.Groups)
            Console.WriteLine($"  {g.Group,-20} {g.Examples,8} {g.Correct,8} {g.Accuracy,8:P1}");
    }
}
