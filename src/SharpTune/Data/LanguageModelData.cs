using System.Text.Json;

namespace SharpTune.Data;

/// <summary>One turn of a conversation, as a <c>messages</c> row holds it.</summary>
public sealed record Turn(string Role, string Content);

/// <summary>
/// One example for training a language model. Exactly one form is set: <see cref="Text"/> (raw text: every token is a
/// target), <see cref="Prompt"/> with <see cref="Completion"/> (the completion is the target), or <see cref="Messages"/>
/// (a conversation: the assistant turns are the targets). Alpaca rows (<c>instruction</c>, <c>input</c>, <c>output</c>)
/// become a user and an assistant turn, as LLaMA-Factory reads them.
/// </summary>
/// <param name="Source">Where the row is, as <c>path:line</c> (or <c>path: element N</c> in a JSON array).</param>
public sealed record LanguageModelExample(string? Text, string? Prompt, string? Completion, IReadOnlyList<Turn>? Messages, string Source)
{
    public string Form => Text is not null ? "text" : Messages is not null ? "messages" : "prompt/completion";

    /// <summary>Conversations: the turns before this one are context (a preference pair's shared prompt), not targets.</summary>
    public int TargetsFrom { get; init; }
}

/// <summary>
/// Reads language-model training data: JSONL (one object per line), a JSON array (Alpaca's <c>alpaca_data.json</c>),
/// or CSV/TSV with a <c>text</c> column or <c>prompt</c> and <c>completion</c> columns. The form of each row is told by
/// its fields: <c>text</c>; <c>prompt</c> + <c>completion</c>; <c>messages</c> (a list of <c>{role, content}</c>);
/// <c>instruction</c> (+ <c>input</c>) + <c>output</c>. Bad rows stop the read with <c>path:line: reason</c>, or with
/// <see cref="DataOptions.SkipBadRows"/> are skipped and listed.
/// </summary>
public static class LanguageModelData
{
    static readonly string[] Roles = ["system", "user", "assistant", "tool"];

    public static DataSet<LanguageModelExample> Read(string path, bool skipBadRows = false, DataFormat format = DataFormat.Auto)
    {
        var rows = new RowCollector<LanguageModelExample>(path, skipBadRows);
        string extension = Path.GetExtension(path).ToLowerInvariant();
        if (format == DataFormat.Auto && extension == ".json")
        {
            JsonRows.ReadArray(path, rows, FromElement, " (as Alpaca's alpaca_data.json)");
            return rows.Finish();
        }
        if (!File.Exists(path)) throw new FileNotFoundException($"Data file not found: {path}", path);   // before the format is looked at
        switch (format == DataFormat.Auto ? DataOptions.DetectFormat(path) : format)
        {
            case DataFormat.Jsonl:
                JsonRows.ReadLines(path, rows, FromElement);
                break;
            case DataFormat.Csv:
            case DataFormat.Tsv:
                ReadDelimited(path, format, rows);
                break;
            default:
                throw new ArgumentException($"{path}: language-model data is JSONL, a JSON array, CSV or TSV (a .txt file with one text per line is read by eval)");
        }
        return rows.Finish();
    }

    static void ReadDelimited(string path, DataFormat format, RowCollector<LanguageModelExample> rows)
    {
        var header = DataReader.ReadLines(path).FirstOrDefault() ?? "";
        char delimiter = (format == DataFormat.Auto ? DataOptions.DetectFormat(path) : format) == DataFormat.Tsv ? '\t' : ',';
        bool pairs = header.Split(delimiter).Select(c => c.Trim().Trim('"')).Contains("completion");
        var options = new DataOptions
        {
            Format = delimiter == '\t' ? DataFormat.Tsv : DataFormat.Csv, TextColumn = pairs ? "prompt" : "text",
            TextPairColumn = pairs ? "completion" : null, Labels = LabelKind.Unlabelled, SkipBadRows = rows.SkipBadRows,
        };
        var read = DataReader.ReadText(path, options);
        foreach (var skipped in read.SkippedRows) rows.Skip(skipped);
        foreach (var e in read.Examples)
            rows.Add(pairs ? new LanguageModelExample(null, e.Text, e.TextPair, null, e.Source) : new LanguageModelExample(e.Text, null, null, null, e.Source));
    }

    static LanguageModelExample FromElement(JsonElement row, RowPlace place)
    {
        DataFormatException Bad(string reason) => place.Error(reason);
        string source = place.Source;
        if (row.ValueKind != JsonValueKind.Object) throw Bad($"expected a JSON object, found {row.ValueKind.ToString().ToLowerInvariant()}");

        string? Text(string name, bool required = true)
        {
            if (!row.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
                return required ? throw Bad($"missing field '{name}'") : null;
            if (value.ValueKind != JsonValueKind.String) throw Bad($"field '{name}' must be a string, found {value.ValueKind.ToString().ToLowerInvariant()}");
            return value.GetString()!;
        }

        if (row.TryGetProperty("messages", out var messages))
        {
            if (messages.ValueKind != JsonValueKind.Array) throw Bad("field 'messages' must be a list of {role, content} objects");
            var turns = new List<Turn>();
            int n = 0;
            foreach (var m in messages.EnumerateArray())
            {
                n++;
                if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                    || !m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                    throw Bad($"message {n} must be an object with string fields 'role' and 'content'");
                if (!Roles.Contains(role.GetString()))
                    throw Bad($"message {n} has role '{role.GetString()}'; expected {string.Join(", ", Roles)}");
                turns.Add(new Turn(role.GetString()!, content.GetString()!));
            }
            if (!turns.Any(t => t.Role == "assistant")) throw Bad("the conversation has no assistant turn to learn from");
            return new LanguageModelExample(null, null, null, turns, source);
        }
        if (row.TryGetProperty("instruction", out _))
        {
            string instruction = Text("instruction")!, output = Text("output")!;
            string? input = Text("input", required: false);
            string user = string.IsNullOrEmpty(input) ? instruction : $"{instruction}\n\n{input}";
            return new LanguageModelExample(null, null, null, [new Turn("user", user), new Turn("assistant", output)], source);
        }
        if (row.TryGetProperty("prompt", out _) || row.TryGetProperty("completion", out _))
        {
            string completion = Text("completion")!;
            if (completion.Length == 0) throw Bad("field 'completion' is empty: nothing to learn");
            return new LanguageModelExample(null, Text("prompt")!, completion, null, source);
        }
        if (row.TryGetProperty("text", out _))
        {
            string text = Text("text")!;
            if (string.IsNullOrWhiteSpace(text)) throw Bad("field 'text' is empty");
            return new LanguageModelExample(text, null, null, null, source);
        }
        var names = row.EnumerateObject().Select(p => $"'{p.Name}'").ToList();
        throw Bad($"no field tells the form of the row: expected 'text', 'prompt' + 'completion', 'messages', or 'instruction' + 'output'; " +
            $"the object has {(names.Count == 0 ? "no fields" : string.Join(", ", names))}");
    }
}
