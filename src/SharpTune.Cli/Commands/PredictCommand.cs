using SharpTune.ModelFolders;
using System.CommandLine;
using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.Inference;
using SharpTune.Peft;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune predict --model RUN_DIR --data FILE --output FILE</c>: predictions for a file (JSONL or CSV out,
/// by the output's extension). Without <c>--data</c>, each line of standard input is one text. With
/// <c>--adapters a=DIR,b=DIR</c> several adapters share one loaded base model; <c>--adapter a</c> picks one, and a
/// standard-input line starting with <c>@b </c> picks another for that line.
/// </summary>
public static class PredictCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Run folder (its best/ model is used) or a saved model folder" };
        var adapters = new Option<string>("--adapters") { Description = "name=folder,... adapters over one shared base model" };
        var adapter = new Option<string>("--adapter") { Description = "With --adapters: the adapter to use (default: the first)" };
        var data = new Option<string>("--data") { Description = "Input data in the training format; omit to read one text per line from stdin" };
        var output = new Option<string>("--output") { Description = "Output file: .jsonl (default) or .csv; omit to print JSON lines" };
        var reading = new DataReadingOptions();
        var command = new Command("predict", "Predict with a fine-tuned model or one of several adapters.") { model, adapters, adapter, data, output };
        reading.AddTo(command);
        command.SetAction(result => CommandRunner.Run(() => Run(result.GetValue(model), result.GetValue(adapters), result.GetValue(adapter),
            result.GetValue(data), result.GetValue(output), reading.Read(result))));
        return command;
    }

    static int Run(string? modelFolder, string? adapterList, string? chosen, string? data, string? output, DataReading reading)
    {
        if ((modelFolder is null) == (adapterList is null)) throw new ArgumentException("give either --model or --adapters");
        if (chosen is not null && adapterList is null) throw new ArgumentException("--adapter needs --adapters");

        if (modelFolder is not null) TaskModelMemory.EnsureFits(modelFolder, "predict");
        AdapterHost? host = null;
        var predictors = new Dictionary<string, Predictor>(StringComparer.Ordinal);
        try
        {
            string first;
            if (adapterList is not null)
            {
                var pairs = adapterList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(pair =>
                {
                    int eq = pair.IndexOf('=');
                    return eq > 0 ? (Name: pair[..eq], Folder: pair[(eq + 1)..]) : throw new ArgumentException($"--adapters: '{pair}' is not name=folder");
                }).ToList();
                var spec = TaskSpec.Load(TaskModelFolder.Resolve(pairs[0].Folder));
                host = new AdapterHost(spec.BaseModel);
                foreach (var (name, folder) in pairs)
                {
                    host.Add(name, folder);
                    predictors[name] = new Predictor(host.Get(name));
                }
                first = chosen ?? pairs[0].Name;
                if (!predictors.ContainsKey(first)) throw new ArgumentException($"--adapter '{first}' is not among --adapters ({string.Join(", ", predictors.Keys)})");
            }
            else
            {
                first = "model";
                predictors[first] = new Predictor(modelFolder!);
            }
            var predictions = data is null ? FromStdin(predictors, first) : FromFile(predictors[first], data, reading);
            Write(predictions, output);
            return 0;
        }
        finally
        {
            foreach (var predictor in predictors.Values) predictor.Dispose();
            host?.Dispose();
        }
    }

    static IReadOnlyList<LabeledPrediction> FromFile(Predictor predictor, string data, DataReading reading)
    {
        if (!File.Exists(data)) throw new FileNotFoundException($"--data: {data} does not exist", data);
        var (result, skipped) = predictor.PredictFile(data, reading);
        if (skipped.Count > 0)
        {
            Console.Error.WriteLine($"skipped {skipped.Count} bad row(s):");
            foreach (var row in skipped) Console.Error.WriteLine($"  {row}");
        }
        return result;
    }

    static IReadOnlyList<LabeledPrediction> FromStdin(IReadOnlyDictionary<string, Predictor> predictors, string defaultName)
    {
        var results = PredictionLines.Predict(TextLines.Of(Console.In, "stdin"), predictors, defaultName);
        return results.Count > 0 ? results : throw new ArgumentException("no input: give --data FILE or pipe text into standard input");
    }

    static void Write(IReadOnlyList<LabeledPrediction> predictions, string? output)
    {
        if (output is null)
        {
            foreach (var p in predictions) Console.WriteLine(PredictionWriter.JsonLine(p));
            return;
        }
        PredictionWriter.Write(output, predictions);
        Console.WriteLine($"{predictions.Count} predictions written to {Path.GetFullPath(output)}");
    }
}
