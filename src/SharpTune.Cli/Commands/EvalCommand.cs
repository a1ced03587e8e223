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
        var dtype = GenerationFlags.WeightsOption("Language models. ");
        var chatTemplate = new Option<string>("--chat-template") { Description = "Language models: a Jinja chat template file for chat rows, instead of the model's own (a run's: the one it trained with)" };
        var compare = new Option<string>("--compare") { Description = "Language models: a second model (the base, a GGUF, a folder or a run) scored on the same data; both figures and the difference are printed" };
        var generate = new Option<int>("--eval-generate") { Description = "Language models: complete N prompts of the data greedily and score them (exact match, ROUGE-L)" };
        var reading = new DataReadingOptions();
        var command = new Command("eval", "Evaluate a fine-tuned model on labelled data; a language model's perplexity on texts, completions or chats, " +
            "its preference accuracy on chosen/rejected pairs, or its multiple-choice accuracy, beside another model's with --compare.")
            { model, data, output, window, stride, dtype, chatTemplate, compare, generate };
        reading.AddTo(command);
        command.SetAction(result => CommandRunner.Run(() => LanguageModelFolder.Find(result.GetValue(model)!) is { } languageModel
            ? LanguageModel(languageModel, result.GetValue(compare), result.GetValue(data)!, result.GetValue(output), result.GetValue(window), result.GetValue(stride),
                GenerationFlags.ParseWeights(result.GetValue(dtype)!), result.GetValue(chatTemplate), result.GetValue(generate))
            : Run(result.GetValue(model)!, result.GetValue(data)!, result.GetValue(output), reading.Read(result), result.GetValue(compare))));
        return command;
    }

    /// <summary>
    /// A language model's figures on a file (<see cref="LanguageModelComparison"/>): perplexity counted as training counts
    /// it (text rows on every token, in overlapping windows when long; prompt/completion, chat and Alpaca rows on the
    /// completion or the assistant turns), preference pairs, or multiple-choice questions; with <c>--compare</c> a second
    /// model on the same data, and the difference.
    /// </summary>
    static int LanguageModel(FoundLanguageModel modelSpec, string? compare, string data, string? output, int? window, int? stride, WeightStorage dtype,
        string? chatTemplate, int generate)
    {
        if (generate < 0) throw new ArgumentException($"--eval-generate must be 0 or more, got {generate}");
        var rows = LanguageModelEvalData.Read(data);
        FoundLanguageModel? other = compare is null ? null
            : LanguageModelFolder.Find(compare) ?? throw new ArgumentException($"--compare {compare}: not a language model (a GGUF file, a Hugging Face folder or a run folder)");
        // A text is rarely as long as the context: the estimate takes 1,024 tokens unless --window says more.
        LanguageModelMemory.EnsureFits(modelSpec, dtype, "eval", 1, window ?? 1024);
        if (other is not null) LanguageModelMemory.EnsureFits(other, dtype, "eval --compare", 1, window ?? 1024);
        var (figures, source) = Measure(modelSpec, dtype, chatTemplate, rows, window, stride, generate);
        Console.WriteLine($"evaluated {rows.Kind} of {data} with {source}");
        foreach (string note in figures.Notes) Console.WriteLine($"  {note}");
        var json = new Dictionary<string, object?> { ["model"] = source, ["data"] = Path.GetFullPath(data), ["kind"] = rows.Kind };
        foreach (var (key, value) in figures.Counts) json[key] = value;
        json["metrics"] = Finite(figures.Values);
        if (other is null)
            Console.WriteLine(string.Join(", ", figures.Values.Select(kv => $"{kv.Key} {kv.Value:F4}")));
        else
        {
            var (baseFigures, baseSource) = Measure(other, dtype, chatTemplate, rows, window, stride, generate);
            Console.WriteLine($"compared with {baseSource}");
            var table = new List<(string Metric, double Model, double Base)>(figures.Values.Select(kv => (kv.Key, kv.Value, baseFigures.Values.GetValueOrDefault(kv.Key, double.NaN))));
            if (figures.Pairs is { } pairs && baseFigures.Pairs is { } basePairs)
            {
                // DPO's implicit reward needs both models: it is the model's, with the compared one as the reference.
                var rewards = LanguageModelComparison.ImplicitRewards(pairs, basePairs);
                foreach (var (key, value) in rewards) table.Add((key, value, double.NaN));
                json["rewards_against_compared"] = Finite(rewards);
            }
            Console.WriteLine($"{"metric",-24} {"model",12} {"compared",12} {"difference",12}");
            foreach (var (metric, value, reference) in table)
                Console.WriteLine($"{metric,-24} {value,12:F4} {(double.IsNaN(reference) ? "" : reference.ToString("F4")),12} {(double.IsNaN(reference) ? "" : (value - reference).ToString("+0.0000;-0.0000")),12}");
            json["compared"] = baseSource;
            json["compared_metrics"] = Finite(baseFigures.Values);
            json["difference"] = Finite(figures.Values.Where(kv => baseFigures.Values.ContainsKey(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value - baseFigures.Values[kv.Key]));
        }
        string path = output ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(data))!, $"eval_{Path.GetFileNameWithoutExtension(data)}.json");
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.WriteLine($"metrics written to {path}");
        return 0;
    }

    static (LanguageModelFigures Figures, string Source) Measure(FoundLanguageModel spec, WeightStorage dtype, string? chatTemplate,
        LanguageModelEvalData rows, int? window, int? stride, int generate)
    {
        using var lm = LanguageModelFolder.Load(spec, dtype, chatTemplate);
        if (rows.Rows?.Any(r => r.Messages is not null) == true || rows.Pairs?.Any(p => p.Chosen.Messages is not null) == true)
            Console.WriteLine(lm.Template is null ? $"{lm.Source}: chat rows written as 'User: ...' / 'Assistant: ...' lines: the model has no chat template"
                : $"{lm.Source}: chat rows rendered with the chat template {lm.Template.Source}");
        return (LanguageModelComparison.Measure(lm, rows, window, stride, generate), lm.Source);
    }

    static Dictionary<string, double?> Finite(IReadOnlyDictionary<string, double> values) =>
        values.ToDictionary(kv => kv.Key, kv => double.IsFinite(kv.Value) ? (double?)kv.Value : null);

    static int Run(string modelFolder, string data, string? output, DataReading reading, string? compare)
    {
        if (compare is not null) throw new ArgumentException("--compare applies to language models; a task model is compared by evaluating each on the same data");
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
