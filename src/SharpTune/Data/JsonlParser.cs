using System.Text.Json;

namespace SharpTune.Data;

/// <summary>
/// JSON Lines: one object per line. Field values may be strings, numbers (kept as written, so
/// <c>1</c> stays "1" rather than "1.0") or booleans; a multi-label label may also be an array.
/// A null value counts as a missing field.
/// </summary>
internal static class JsonlParser
{
    public static void Read(List<string> lines, string path, DataOptions options, RowCollector<TextExample> rows)
    {
        for (int i = 0; i < lines.Count; i++)
        {
            if (DataReader.IsBlank(lines[i])) continue;
            int line = i + 1;
            try
            {
                rows.Add(ReadLine(lines[i], options, path, line));
            }
            catch (DataFormatException e) when (rows.SkipBadRows)
            {
                rows.Skip(e);
            }
        }
    }

    static TextExample ReadLine(string json, DataOptions options, string path, int line)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new DataFormatException(path, line, $"invalid JSON; expected one JSON object per line ({e.Message})");
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new DataFormatException(path, line, $"expected a JSON object, found {Describe(root.ValueKind)}");
            string? text = Field(root, options.TextColumn, options, path, line);
            string? pair = options.TextPairColumn is null ? null : Field(root, options.TextPairColumn, options, path, line);
            string? label = options.Labels == LabelKind.Unlabelled ? null : Field(root, options.LabelColumn, options, path, line);
            return TextRow.ToExample(text, pair, label, options, path, line);
        }
    }

    static string Field(JsonElement row, string name, DataOptions options, string path, int line)
    {
        if (!row.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            var names = row.EnumerateObject().Select(p => $"'{p.Name}'").ToList();
            throw new DataFormatException(path, line,
                $"missing field '{name}'; the object has fields: {(names.Count == 0 ? "none" : string.Join(", ", names))}");
        }
        if (value.ValueKind == JsonValueKind.Array && name == options.LabelColumn && options.Labels == LabelKind.MultiLabel)
        {
            var labels = value.EnumerateArray().Select(v => Scalar(v, name, path, line)).ToList();
            var joined = labels.FirstOrDefault(l => l.Contains(options.LabelSeparator, StringComparison.Ordinal));
            if (joined is not null)
                throw new DataFormatException(path, line, $"label '{joined}' in field '{name}' contains the label separator '{options.LabelSeparator}'");
            return string.Join(options.LabelSeparator, labels);
        }
        return Scalar(value, name, path, line);
    }

    static string Scalar(JsonElement value, string name, string path, int line) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString()!,
        JsonValueKind.Number => value.GetRawText(),
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        var kind => throw new DataFormatException(path, line,
            $"field '{name}' is {Describe(kind)}; expected a string, number or boolean" +
            (kind == JsonValueKind.Array ? " (arrays are accepted only as multi-label labels)" : "")),
    };

    static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        JsonValueKind.Null => "null",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        _ => "a boolean",
    };
}
