using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Training;

/// <summary>Where an option's value came from, lowest precedence first.</summary>
public enum OptionSource
{
    Default,
    MethodDefault,
    /// <summary>The no-argument run's values (minilm on the spam sample).</summary>
    SampleRun,
    ConfigFile,
    CommandLine,
}

/// <summary>Values given together by one source: a config file, the command line, the sample run.</summary>
public sealed record OptionLayer(OptionSource Source, string Description, IReadOnlyList<OptionLayer.Entry> Entries)
{
    /// <param name="Where">How errors name it: <c>--lr</c>, or <c>run.yaml: learning_rate</c>.</param>
    public sealed record Entry(OptionSpec Spec, JsonNode? Value, string Where);

    /// <summary>
    /// A config file's top-level mapping. Keys are the options' names (<c>lr</c>, <c>lora_r</c>, <c>--batch-size</c>,
    /// <c>batch-size</c>) or their listed aliases (<c>learning_rate</c>); a saved run_config.json loads as it is,
    /// including the nested <c>training</c>/<c>peft</c> layout earlier versions wrote. An unknown key is an error
    /// naming it and the nearest valid key.
    /// </summary>
    public static OptionLayer FromConfig(JsonObject root, string path)
    {
        var entries = new List<Entry>();
        void Read(JsonObject map)
        {
            foreach (var (key, value) in map)
            {
                string normal = OptionSpec.NormaliseKey(key);
                if (normal == RunConfig.SourcesKey) continue;                        // run_config.json's record of sources
                if (normal is "training" or "peft" && value is JsonObject nested) { Read(nested); continue; }
                if (Legacy(normal, value, path) is { } legacy) { entries.AddRange(legacy); continue; }
                var spec = OptionCatalog.Find(key) ?? throw new ArgumentException(
                    $"{path}: unknown option '{key}'{Suggestions.DidYouMean(normal, OptionCatalog.Keys)}");
                if (value is null) continue;                                          // null: not set, the default applies
                entries.Add(new Entry(spec, value, $"{path}: {key}"));
            }
        }
        Read(root);
        return new OptionLayer(OptionSource.ConfigFile, $"config file {path}", entries);
    }

    /// <summary>Keys of run_config.json files written before options had one table.</summary>
    static IEnumerable<Entry>? Legacy(string key, JsonNode? value, string path)
    {
        switch (key)
        {
            case "learning_rate_given" or "prompt_init_token_ids":
                return [];
            case "mean_pooling":
                return value is JsonValue v && v.GetValueKind() == JsonValueKind.True
                    ? [new Entry(OptionCatalog.Get("pooling"), JsonValue.Create("mean"), $"{path}: {key}")] : [];
            case "use_pooler":
                return value is JsonValue u && u.GetValueKind() == JsonValueKind.False
                    ? [new Entry(OptionCatalog.Get("pooling"), JsonValue.Create("cls"), $"{path}: {key}")] : [];
            default:
                return null;
        }
    }
}

/// <summary>
/// Resolves a run's options once, into typed values, with one precedence: command line &gt; config file (or the
/// sample run) &gt; the method's default &gt; the global default. Records where each value came from.
/// </summary>
public static class OptionResolver
{
    /// <param name="layers">Explicit values, lowest precedence first.</param>
    public static FineTuneOptions Resolve(params OptionLayer[] layers)
    {
        var options = new FineTuneOptions();
        var sources = OptionCatalog.All.ToDictionary(s => s.Name, _ => "default", StringComparer.Ordinal);
        // Later layers win. Within one layer, a key given twice (an alias and its name) is an error, not a silent pick.
        foreach (var layer in layers.OrderBy(l => l.Source))
        {
            var seen = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in layer.Entries)
            {
                if (seen.TryGetValue(entry.Spec.Name, out var earlier))
                    throw new ArgumentException($"{entry.Where}: the same option as {earlier}; give it once");
                seen[entry.Spec.Name] = entry.Where;
                options = entry.Spec.Set(options, entry.Value, entry.Where);
                sources[entry.Spec.Name] = layer.Description;
            }
        }
        if (sources["lr"] == "default")
        {
            options = options with { Training = options.Training with { LearningRate = TrainingMethods.LearningRateFor(options.Method) } };
            sources["lr"] = $"default of --method {options.Method}";
        }
        return options with { Sources = sources };
    }
}

/// <summary>run_config.json: every option's value under its config key, and where each came from.</summary>
public static class RunConfig
{
    public const string FileName = "run_config.json";
    public const string SourcesKey = "sources";

    public static string ToJson(FineTuneOptions options)
    {
        var root = new JsonObject();
        foreach (var spec in OptionCatalog.All.Where(s => s.Name != "resume")) root[spec.Key] = spec.ToJson(options);
        var sources = new JsonObject();
        foreach (var spec in OptionCatalog.All.Where(s => s.Name != "resume"))
            sources[spec.Key] = options.Sources.TryGetValue(spec.Name, out var source) ? source : "default";
        root[SourcesKey] = sources;
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
