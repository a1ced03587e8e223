using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>The two files of a PEFT adapter folder: <c>adapter_config.json</c> and <c>adapter_model.safetensors</c>.</summary>
public static class AdapterFiles
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";

    /// <summary>Writes the config pretty-printed with sorted keys (as PEFT does) and the tensors, both atomically.</summary>
    public static void Write(string folder, IReadOnlyDictionary<string, object?> config, IReadOnlyDictionary<string, Tensor> tensors)
    {
        Directory.CreateDirectory(folder);
        var sorted = new JsonObject();
        foreach (var key in config.Keys.Order(StringComparer.Ordinal))
            sorted[key] = JsonSerializer.SerializeToNode(config[key]);
        AtomicFile.WriteAllText(Path.Combine(folder, ConfigFile), sorted.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        SafeTensors.Save(Path.Combine(folder, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>Reads the config of an adapter folder; errors name the file.</summary>
    public static JsonObject ReadConfig(string folder)
    {
        string path = Path.Combine(folder, ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{folder}: not an adapter folder (no {ConfigFile})", path);
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }
    }

    /// <summary>The <c>peft_type</c> of an adapter folder's config.</summary>
    public static string ReadPeftType(JsonObject config, string folder) =>
        config["peft_type"]?.GetValue<string>() ?? throw new InvalidDataException($"{Path.Combine(folder, ConfigFile)}: no peft_type");

    public static Dictionary<string, Tensor> ReadWeights(string folder) => SafeTensors.Load(Path.Combine(folder, WeightsFile));

    /// <summary>The head's tensors as PEFT stores them under modules_to_save: <c>base_model.model.classifier.weight</c>, ...</summary>
    public static Dictionary<string, Tensor> HeadTensors(ITunableModel model)
    {
        var result = new Dictionary<string, Tensor>();
        foreach (var (name, parameter) in model.NamedParameters())
            if (model.IsHead(name))
                result[$"base_model.model.{name}"] = parameter;
        return result;
    }

    /// <summary>Copies head tensors saved by <see cref="HeadTensors"/> back into the model.</summary>
    public static void LoadHead(ITunableModel model, IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        using var noGrad = no_grad();
        foreach (var (name, parameter) in model.NamedParameters())
        {
            if (!model.IsHead(name)) continue;
            if (!tensors.TryGetValue($"base_model.model.{name}", out var value))
                throw new InvalidDataException($"{source}: the adapter lacks the head weight base_model.model.{name}");
            if (!value.shape.SequenceEqual(parameter.shape))
                throw new InvalidDataException($"{source}: head weight {name} has shape [{string.Join(", ", value.shape)}], the model expects [{string.Join(", ", parameter.shape)}] (different label set?)");
            parameter.copy_(value);
        }
    }
}
