using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Training;
using YamlDotNet.RepresentationModel;

namespace SharpTune.Cli;

/// <summary>Reads a run's options from a YAML or JSON file with snake_case keys (the layout of <c>run_config.json</c>).</summary>
public static class ConfigFile
{
    public static FineTuneOptions Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Config file not found: {path}", path);
        string text = File.ReadAllText(path);
        JsonNode? node;
        try
        {
            node = path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? JsonNode.Parse(text) : FromYaml(text, path);
        }
        catch (Exception e) when (e is JsonException or YamlDotNet.Core.YamlException)
        {
            throw new InvalidDataException($"{path}: not valid {(path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? "JSON" : "YAML")} ({e.Message})", e);
        }
        if (node is not JsonObject) throw new InvalidDataException($"{path}: the config must be a mapping of option names to values");
        try
        {
            var options = new JsonSerializerOptions(FineTuneJob.ConfigJson) { UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow };
            return node.Deserialize<FineTuneOptions>(options) ?? throw new InvalidDataException($"{path}: empty config");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
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
