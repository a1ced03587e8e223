using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Training;
using YamlDotNet.RepresentationModel;

namespace SharpTune.Cli;

/// <summary>
/// Reads a run's options from a YAML or JSON file: a flat mapping whose keys are the options' names (<c>lr</c>,
/// <c>lora_r</c>, <c>batch-size</c>) or their aliases (<c>learning_rate</c>), as axolotl and LLaMA-Factory files
/// are; a saved <c>run_config.json</c> loads as it is.
/// </summary>
public static class ConfigFile
{
    public static OptionLayer Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Config file not found: {path}", path);
        string text = File.ReadAllText(path);
        bool json = path.EndsWith(".json", StringComparison.OrdinalIgnoreCase);
        JsonNode? node;
        try
        {
            node = json ? JsonNode.Parse(text) : FromYaml(text, path);
        }
        catch (Exception e) when (e is JsonException or YamlDotNet.Core.YamlException)
        {
            throw new InvalidDataException($"{path}: not valid {(json ? "JSON" : "YAML")} ({e.Message})", e);
        }
        return node is JsonObject map
            ? OptionLayer.FromConfig(map, path)
            : throw new InvalidDataException($"{path}: the config must be a mapping of option names to values");
    }

    static JsonNode? FromYaml(string text, string path)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(text));
        if (stream.Documents.Count == 0) throw new InvalidDataException($"{path}: empty config");
        return Convert(stream.Documents[0].RootNode);
    }

    /// <summary>YAML scalars carry no types; read them as YAML 1.2's core schema does (null, bool, number, string).</summary>
    static JsonNode? Convert(YamlNode node) => node switch
    {
        YamlMappingNode map => new JsonObject(map.Children.Select(kv =>
            KeyValuePair.Create(((YamlScalarNode)kv.Key).Value ?? "", Convert(kv.Value)))),
        YamlSequenceNode list => new JsonArray(list.Children.Select(Convert).ToArray()),
        YamlScalarNode scalar => Scalar(scalar),
        _ => null,
    };

    static JsonNode? Scalar(YamlScalarNode scalar)
    {
        string? value = scalar.Value;
        if (scalar.Style is YamlDotNet.Core.ScalarStyle.SingleQuoted or YamlDotNet.Core.ScalarStyle.DoubleQuoted) return JsonValue.Create(value);
        if (value is null or "" or "~" or "null") return null;
        if (value is "true" or "True") return JsonValue.Create(true);
        if (value is "false" or "False") return JsonValue.Create(false);
        if (long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long integer)) return JsonValue.Create(integer);
        if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double real)) return JsonValue.Create(real);
        return JsonValue.Create(value);
    }
}
