using System.CommandLine;
using System.Text.Json;
using SharpTune.Checkpoints;
using SharpTune.Data;
using SharpTune.Inference;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune eval --model RUN_DIR --data FILE</c>: metrics of a fine-tuned model on labelled data, printed and written as JSON.</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Run folder (its best/ model is used) or a saved model folder", Required = true };
        var data = new Option<string>("--data") { Description = "Labelled data in the training format", Required = true };
        var output = new Option<string>("--output") { Description = "Where to write the metrics JSON (default: eval_<data>.json in the model folder)" };
        var reading = new DataReadingOptions();
        var command = new Command("eval", "Evaluate a fine-tuned model on labelled data.") { model, data, output };
        reading.AddTo(command);
        command.SetAction(result => CommandRunner.Run(() =>
            Run(result.GetValue(model)!, result.GetValue(data)!, result.GetValue(output), reading.Read(result))));
        return command;
    }

    static int Run(string modelFolder, string data, string? output, DataReading reading)
    {
        if (!File.Exists(data)) throw new FileNotFoundException($"--data: {data} does not exist", data);
        using var predictor = new Predictor(modelFolder);
        var (metrics, report, count, skipped) = predictor.Evaluate(data, reading);
        Console.WriteLine($"evaluated {count} examples of {data}{(skipped.Count > 0 ? $" ({skipped.Count} bad rows skipped)" : "")}");
        foreach (var row in skipped) Console.WriteLine($"  skipped {row}");
        Console.WriteLine(report.ToTable());
        Console.WriteLine(string.Join(", ", metrics.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key} {kv.Value:F4}")));
        string path = output ?? Path.Combine(modelFolder, $"eval_{Path.GetFileNameWithoutExtension(data)}.json");
        var json = new Dictionary<string, object?>
        {
            ["data"] = Path.GetFullPath(data), ["examples"] = count, ["skipped_rows"] = skipped,
            ["metrics"] = metrics.ToDictionary(kv => kv.Key, kv => double.IsFinite(kv.Value) ? (double?)kv.Value : null),
            ["report"] = JsonDocument.Parse(report.ToJson()).RootElement,
        };
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.WriteLine($"metrics written to {Path.GetFullPath(path)}");
        return 0;
    }
}
