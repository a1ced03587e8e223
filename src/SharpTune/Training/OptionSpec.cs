using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Training;

/// <summary>The kind of value an option takes, which decides how a command-line word or a config value is read.</summary>
public enum OptionValueKind
{
    Text,
    Integer,
    Number,
    /// <summary>A switch: present on the command line, <c>true</c>/<c>false</c> in a config file.</summary>
    Flag,
    /// <summary>Comma-separated on the command line, a list or comma-separated string in a config file.</summary>
    TextList,
    NumberList,
}

/// <summary>
/// One option of a fine-tuning run: its name (the command-line flag is <c>--name</c>, the config key the same
/// name in snake_case), the other config keys that mean it, its help, and how it reads and writes its value in
/// <see cref="FineTuneOptions"/>. <see cref="OptionCatalog"/> lists them all; the CLI builds its flags from it.
/// </summary>
public sealed class OptionSpec
{
    public required string Name { get; init; }
    public required string Help { get; init; }
    public required OptionValueKind Kind { get; init; }
    /// <summary>Other flags that mean this option (<c>--freeze</c> for <c>--method</c>).</summary>
    public IReadOnlyList<string> FlagAliases { get; init; } = [];
    /// <summary>Other config keys that mean this option (<c>learning_rate</c> for <c>lr</c>; run_config.json's older nested names).</summary>
    public IReadOnlyList<string> KeyAliases { get; init; } = [];
    /// <summary>The value in the options (null when unset).</summary>
    public required Func<FineTuneOptions, object?> Get { get; init; }
    /// <summary>Parses <c>value</c> (described by <c>where</c> in errors) and returns the options with it set.</summary>
    public required Func<FineTuneOptions, JsonNode?, string, FineTuneOptions> Set { get; init; }

    public string Flag => "--" + Name;
    public string Key => Name.Replace('-', '_');

    /// <summary>Keys a config file may use for this option, normalised (lower case, '_' for '-').</summary>
    public IEnumerable<string> Keys => KeyAliases.Prepend(Key).Select(NormaliseKey);

    public static string NormaliseKey(string key) => key.Trim().ToLowerInvariant().Replace('-', '_');

    /// <summary>The value as JSON for run_config.json.</summary>
    public JsonNode? ToJson(FineTuneOptions options) => Get(options) switch
    {
        null => null,
        Enum e => JsonValue.Create(JsonNamingPolicy.SnakeCaseLower.ConvertName(e.ToString())),
        var v => JsonSerializer.SerializeToNode(v),
    };

    // --- reading values: a command-line word arrives as a JSON string, a config value as whatever it is ---

    public static string Text(JsonNode? node, string where) => node switch
    {
        JsonValue v when v.TryGetValue(out string? s) => s,
        JsonValue v when v.GetValueKind() is JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => v.ToJsonString(),
        null => throw new ArgumentException($"{where} needs a value"),
        _ => throw new ArgumentException($"{where} must be a text value, got {node.ToJsonString()}"),
    };

    public static int Integer(JsonNode? node, string where)
    {
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int i)) return i;
        string text = Text(node, where);
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int parsed)
            ? parsed
            : throw new ArgumentException($"{where} '{text}' is not a whole number");
    }

    public static double Number(JsonNode? node, string where)
    {
        // A whole number in a config file arrives as an integer (JsonValue<long>), which GetValue<double> refuses: read as text.
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out double d)) return d;
        string text = Text(node, where);
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed) && double.IsFinite(parsed)
            ? parsed
            : throw new ArgumentException($"{where} '{text}' is not a number");
    }

    public static bool Switch(JsonNode? node, string where)
    {
        if (node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return v.GetValue<bool>();
        string text = Text(node, where).Trim().ToLowerInvariant();
        return text switch
        {
            "true" or "yes" or "on" or "1" => true,
            "false" or "no" or "off" or "0" => false,
            _ => throw new ArgumentException($"{where} '{text}' is not true or false"),
        };
    }

    public static IReadOnlyList<string> TextList(JsonNode? node, string where) => node is JsonArray array
        ? array.Select(item => Text(item, where)).ToList()
        : Text(node, where).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public static IReadOnlyList<float> NumberList(JsonNode? node, string where) => node is JsonArray array
        ? array.Select(item => (float)Number(item, where)).ToList()
        : TextList(node, where).Select(item => (float)Number(JsonValue.Create(item), where)).ToList();

    /// <summary>One of <paramref name="choices"/> (case-insensitive), or an error listing them and the nearest.</summary>
    public static string Choice(JsonNode? node, string where, IReadOnlyCollection<string> choices)
    {
        string text = Text(node, where).Trim();
        var match = choices.FirstOrDefault(c => string.Equals(c, text, StringComparison.OrdinalIgnoreCase));
        return match ?? throw new ArgumentException($"{where} '{text}' is not known{Suggestions.DidYouMean(text, choices)}: use {string.Join(", ", choices)}");
    }
}

/// <summary>"Did you mean" for mistyped names: the nearest candidate by edit distance, when it is near enough.</summary>
public static class Suggestions
{
    public static string? Nearest(string typed, IEnumerable<string> candidates)
    {
        string lower = typed.ToLowerInvariant();
        var best = candidates.Select(c => (Candidate: c, Distance: Distance(lower, c.ToLowerInvariant())))
            .OrderBy(x => x.Distance).ThenBy(x => x.Candidate, StringComparer.Ordinal).FirstOrDefault();
        return best.Candidate is not null && best.Distance <= Math.Max(2, typed.Length / 3) ? best.Candidate : null;
    }

    /// <summary>" (did you mean 'x'?)", or empty when nothing is near.</summary>
    public static string DidYouMean(string typed, IEnumerable<string> candidates) =>
        Nearest(typed, candidates) is { } near ? $" (did you mean '{near}'?)" : "";

    /// <summary>Levenshtein distance.</summary>
    static int Distance(string a, string b)
    {
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        var current = new int[b.Length + 1];
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
