using System.Text.Json;

namespace SharpTune.Data;

/// <summary>A multiple-choice question as lm-evaluation-harness scores it: a context, the choices, and the right one's index.</summary>
public sealed record MultipleChoiceItem(string Context, IReadOnlyList<string> Choices, int Answer, string Source);

/// <summary>
/// Reads multiple-choice data: JSONL rows with <c>context</c> (a string), <c>choices</c> (two or more strings) and
/// <c>answer</c> (the right choice's index, or its text). Bad rows stop the read with <c>path:line: reason</c>.
/// </summary>
public static class MultipleChoiceData
{
    public static DataSet<MultipleChoiceItem> Read(string path, bool skipBadRows = false)
    {
        var rows = new RowCollector<MultipleChoiceItem>(path, skipBadRows);
        JsonRows.ReadLines(path, rows, FromElement);
        return rows.Finish();
    }

    /// <summary>Whether a JSON row is a multiple-choice item (has <c>choices</c>).</summary>
    public static bool IsItem(JsonElement row) => row.ValueKind == JsonValueKind.Object && row.TryGetProperty("choices", out _);

    static MultipleChoiceItem FromElement(JsonElement row, RowPlace place)
    {
        DataFormatException Bad(string reason) => place.Error(reason);
        if (row.ValueKind != JsonValueKind.Object) throw Bad("expected a JSON object with context, choices and answer");
        if (!row.TryGetProperty("context", out var context) || context.ValueKind != JsonValueKind.String) throw Bad("field 'context' must be a string");
        if (!row.TryGetProperty("choices", out var choices) || choices.ValueKind != JsonValueKind.Array) throw Bad("field 'choices' must be a list of strings");
        var options = new List<string>();
        foreach (var choice in choices.EnumerateArray())
            options.Add(choice.ValueKind == JsonValueKind.String ? choice.GetString()! : throw Bad("field 'choices' must be a list of strings"));
        if (options.Count < 2) throw Bad($"field 'choices' has {options.Count} choice(s); a question needs at least two");
        if (!row.TryGetProperty("answer", out var answer)) throw Bad("missing field 'answer' (the right choice's index from 0, or its text)");
        int index = answer.ValueKind switch
        {
            JsonValueKind.Number when answer.TryGetInt32(out int i) => i,
            JsonValueKind.String => options.IndexOf(answer.GetString()!),
            _ => -1,
        };
        if (index < 0 || index >= options.Count)
            throw Bad($"field 'answer' ({answer.GetRawText()}) names none of the {options.Count} choices: give an index from 0 to {options.Count - 1} or a choice's text");
        return new MultipleChoiceItem(context.GetString()!, options, index, place.Source);
    }
}
