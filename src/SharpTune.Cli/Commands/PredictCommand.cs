using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using SharpTune.Checkpoints;
using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.Inference;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune predict --model RUN_DIR --data FILE --output FILE</c>: predictions for a file (JSONL or CSV out,
/// by the output's extension). Without <c>--data</c>, each line of standard input is one text.
/// </summary>
public static class PredictCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Run folder (its best/ model is used) or a saved model folder", Required = true };
        var data = new Option<string>("--data") { Description = "Input data in the training format; omit to read one text per line from stdin" };
        var output = new Option<string>("--output") { Description = "Output file: .jsonl (default) or .csv; omit to print JSON lines" };
        var skip = new Option<bool>("--skip-bad-rows") { Description = "Skip malformed rows (counted and listed) instead of stopping" };
        var command = new Command("predict", "Predict with a fine-tuned model.") { model, data, output, skip };
        command.SetAction(result => CommandRunner.Run(() =>
            Run(result.GetValue(model)!, result.GetValue(data), result.GetValue(output), result.GetValue(skip))));
        return command;
    }

    static int Run(string modelFolder, string? data, string? output, bool skipBadRows)
    {
        using var predictor = new Predictor(modelFolder);
        IReadOnlyList<LabeledPrediction> predictions;
        if (data is null)
        {
            var lines = new List<string>();
            while (Console.In.ReadLine() is { } line) if (line.Trim().Length > 0) lines.Add(line);
            if (lines.Count == 0) throw new ArgumentException("no input: give --data FILE or pipe text into standard input");
            predictions = predictor.Spec.Kind == TaskKind.Tokens
                ? predictor.PredictWords(lines.Select((l, i) => new TokenExample(l.Split(' ', StringSplitOptions.RemoveEmptyEntries), null, $"stdin:{i + 1}")).ToList())
                : predictor.PredictTexts(lines.Select((l, i) => new TextExample(l, null, null, $"stdin:{i + 1}")).ToList());
        }
        else
        {
            var (result, skipped) = predictor.PredictFile(data, skipBadRows);
            predictions = result;
            if (skipped.Count > 0)
            {
                Console.Error.WriteLine($"skipped {skipped.Count} bad row(s):");
                foreach (var row in skipped) Console.Error.WriteLine($"  {row}");
            }
        }

        if (output is null)
        {
            foreach (var p in predictions) Console.WriteLine(JsonLine(p));
            return 0;
        }
        AtomicFile.Write(output, stream =>
        {
            using var writer = new StreamWriter(stream, new UTF8Encoding(false), leaveOpen: true);
            if (output.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
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
        Console.WriteLine($"{predictions.Count} predictions written to {Path.GetFullPath(output)}");
        return 0;
    }

    static string Label(LabeledPrediction p) =>
        p.Value is { } value ? value.ToString("R", CultureInfo.InvariantCulture) : string.Join(p.Labels.Count > 1 && p.Probabilities is null ? " " : "|", p.Labels);

    static string Score(LabeledPrediction p) =>
        p.Probabilities is { } probabilities && p.Labels.Count == 1 ? probabilities[p.Labels[0]].ToString("F6", CultureInfo.InvariantCulture) : "";

    static string JsonLine(LabeledPrediction p) => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["source"] = p.Source,
        ["input"] = p.Input,
        ["prediction"] = p.Value is { } v ? v : p.Labels,
        ["probabilities"] = p.Probabilities,
    });

    static string Csv(string field) => field.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? $"\"{field.Replace("\"", "\"\"")}\"" : field;
}
