using SharpTune.ModelFolders;
using System.CommandLine;
using System.Text.Json;
using SharpTune.Checkpoints;
using SharpTune.Generation;
using SharpTune.Models.Decoders;
using SharpTune.Data;
using SharpTune.Inference;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune eval --model RUN_DIR --data FILE</c>: metrics of a fine-tuned model on labelled data, printed and written as JSON.</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Run folder (its best/ model is used) or a saved model folder", Required = true };
        var data = new Option<string>("--data") { Description = "Labelled data in the training format", Required = true };
        var output = new Option<string>("--output") { Description = "Where to write the metrics JSON (default: eval_<data>.json in the model folder)" };
        var window = new Option<int?>("--window") { Description = "Language models: tokens of a text scored at once; prompt/completion and chat rows are cut to it (default: the model's context)" };
        var stride = new Option<int?>("--stride") { Description = "Language models: step between windows of a long text (default: half the window)" };
        var dtype = new Option<string>("--dtype") { Description = "Language models. " + GenerateCommand.DTypeHelp, DefaultValueFactory = _ => "stored" };
        var chatTemplate = new Option<string>("--chat-template") { Description = "Language models: a Jinja chat template file for chat rows, instead of the model's own (a run's: the one it trained with)" };
        var reading = new DataReadingOptions();
        var command = new Command("eval", "Evaluate a fine-tuned model on labelled data, or a language model's perplexity on texts, completions or chats.")
            { model, data, output, window, stride, dtype, chatTemplate };
        reading.AddTo(command);
        command.SetAction(result => CommandRunner.Run(() => LanguageModelFolder.Find(result.GetValue(model)!) is { } languageModel
            ? Perplexity(languageModel, result.GetValue(data)!, result.GetValue(output), result.GetValue(window), result.GetValue(stride),
                GenerateCommand.ParseDType(result.GetValue(dtype)!), result.GetValue(chatTemplate))
            : Run(result.GetValue(model)!, result.GetValue(data)!, result.GetValue(output), reading.Read(result))));
        return command;
    }

    /// <summary>
    /// Perplexity and mean negative log-likelihood of a language model over a file's rows, counted as training counts
    /// them (<see cref="LanguageModelEvaluation"/>): <c>text</c> rows (or a .txt file, one text per line) on every
    /// token, in overlapping windows when long; prompt/completion, <c>messages</c> and Alpaca rows on the completion or
    /// the assistant turns, rendered with the model's chat template.
    /// </summary>
    static int Perplexity(FoundLanguageModel modelSpec, string data, string? output, int? window, int? stride, WeightStorage dtype,
        string? chatTemplate)
    {
        if (!File.Exists(data)) throw new FileNotFoundException($"--data: {data} does not exist", data);
        var rows = ReadRows(data);
        // A text is rarely as long as the context: the estimate takes 1,024 tokens unless --window says more.
        LanguageModelMemory.EnsureFits(modelSpec, dtype, "eval", 1, window ?? 1024);
        using var lm = LanguageModelFolder.Load(modelSpec, dtype, chatTemplate);
        if (rows.Any(r => r.Messages is not null))
            Console.WriteLine(lm.Template is null ? "chat rows written as 'User: ...' / 'Assistant: ...' lines: the model has no chat template"
                : $"chat rows rendered with the chat template {lm.Template.Source}");
        var result = LanguageModelEvaluation.Score(lm, rows, window, stride);
        Console.WriteLine($"evaluated {result.Examples} rows of {data}: {result.Tokens:N0} predicted tokens ({result.Counted})" +
            (result.Windows > 0 ? $", {result.Windows} window(s) of at most {window ?? lm.Model.Info.ContextLength} tokens, stride {result.Stride}" : ""));
        if (result.Truncated > 0) Console.WriteLine($"truncated {result.Truncated} row(s) to the model's context");
        foreach (string dropped in result.Dropped) Console.WriteLine($"  not scored: {dropped}");
        Console.WriteLine($"perplexity {result.Perplexity:F4}, mean negative log-likelihood {result.MeanNll:F6} nats/token");
        string path = output ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(data))!, $"eval_{Path.GetFileNameWithoutExtension(data)}.json");
        var json = new Dictionary<string, object?>
        {
            ["model"] = lm.Source, ["data"] = Path.GetFullPath(data), ["rows"] = result.Examples, ["tokens"] = result.Tokens, ["counted"] = result.Counted,
            ["perplexity"] = result.Perplexity, ["mean_nll"] = result.MeanNll, ["truncated"] = result.Truncated, ["not_scored"] = result.Dropped,
            ["window"] = result.Windows > 0 ? window ?? lm.Model.Info.ContextLength : null, ["stride"] = result.Windows > 0 ? result.Stride : null,
        };
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.WriteLine($"metrics written to {path}");
        return 0;
    }

    /// <summary>Data files are read as training data is (JSONL, JSON array, CSV, TSV); any other file is one text per line.</summary>
    static IReadOnlyList<LanguageModelExample> ReadRows(string path)
    {
        bool dataFile = Path.GetExtension(path).ToLowerInvariant() is ".jsonl" or ".ndjson" or ".json" or ".csv" or ".tsv" or ".tab";
        var rows = dataFile
            ? LanguageModelData.Read(path).Examples
            : TextLines.Read(TextLines.OfFile(path), false, ["text"]).Select((text, i) => new LanguageModelExample(text, null, null, null, $"{path}:{i + 1}")).ToList();
        return rows.Count > 0 ? rows : throw new InvalidDataException($"{path}: no rows");
    }

    static int Run(string modelFolder, string data, string? output, DataReading reading)
    {
        if (!File.Exists(data)) throw new FileNotFoundException($"--data: {data} does not exist", data);
        TaskModelMemory.EnsureFits(modelFolder, "eval");
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
