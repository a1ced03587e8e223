using System.Text.Json;

namespace SharpTune.Data;

/// <summary>
/// One preference pair: a prompt with a chosen and a rejected completion, each as a language-model example whose targets
/// are the completion only (a prompt + completion, or a conversation whose turns from <see cref="LanguageModelExample.TargetsFrom"/> on
/// are the completion). Both share the prompt.
/// </summary>
public sealed record PreferencePair(LanguageModelExample Chosen, LanguageModelExample Rejected, string Source)
{
    public string Form => Chosen.Messages is null ? "prompt/chosen/rejected" : "conversations";
}

/// <summary>
/// Reads preference data in TRL's forms: <c>prompt</c> + <c>chosen</c> + <c>rejected</c> as texts; or conversational, where
/// <c>chosen</c> and <c>rejected</c> are lists of <c>{role, content}</c> messages, with the prompt either a shared
/// <c>prompt</c> message list or the messages both lists begin with (TRL's implicit prompt). JSONL, a JSON array, or
/// CSV/TSV with prompt, chosen and rejected columns. Bad rows stop the read with <c>path:line: reason</c>, or with
/// <c>--skip-bad-rows</c> are skipped and listed.
/// </summary>
public static class PreferenceData
{
    static readonly string[] Roles = ["system", "user", "assistant", "tool"];

    public static DataSet<PreferencePair> Read(string path, bool skipBadRows = false, DataFormat format = DataFormat.Auto)
    {
        var rows = new RowCollector<PreferencePair>(path, skipBadRows);
        if (!File.Exists(path)) throw new FileNotFoundException($"Data file not found: {path}", path);
        var detected = format == DataFormat.Auto ? Path.GetExtension(path).ToLowerInvariant() == ".json" ? (DataFormat?)null : DataOptions.DetectFormat(path) : format;
        switch (detected)
        {
            case null:
                JsonRows.ReadArray(path, rows, FromElement);
                break;
            case DataFormat.Jsonl:
                JsonRows.ReadLines(path, rows, FromElement);
                break;
            case DataFormat.Csv or DataFormat.Tsv:
                ReadDelimited(path, detected.Value, rows);
                break;
            default:
                throw new ArgumentException($"{path}: preference data is JSONL, a JSON array, CSV or TSV with prompt, chosen and rejected");
        }
        return rows.Finish();
    }

    /// <summary>CSV/TSV through the text reader: prompt as the text, chosen as its pair, rejected as its label.</summary>
    static void ReadDelimited(string path, DataFormat format, RowCollector<PreferencePair> rows)
    {
        var options = new DataOptions
        {
            Format = format, TextColumn = "prompt", TextPairColumn = "chosen", LabelColumn = "rejected",
            Labels = LabelKind.SingleLabel, SkipBadRows = rows.SkipBadRows,
        };
        var read = DataReader.ReadText(path, options);
        foreach (var skipped in read.SkippedRows) rows.Skip(skipped);
        foreach (var e in read.Examples)
            rows.AddOrSkip(() => Texts(e.Text, e.TextPair ?? "", e.Label ?? "", e.Source, reason => new DataFormatException(e.Source, reason)));
    }

    static PreferencePair FromElement(JsonElement row, RowPlace place)
    {
        DataFormatException Bad(string reason) => place.Error(reason);
        string source = place.Source;
        if (row.ValueKind != JsonValueKind.Object) throw Bad($"expected a JSON object, found {row.ValueKind.ToString().ToLowerInvariant()}");
        if (!row.TryGetProperty("chosen", out var chosen) || !row.TryGetProperty("rejected", out var rejected))
        {
            var names = row.EnumerateObject().Select(p => $"'{p.Name}'").ToList();
            throw Bad($"a preference row needs 'chosen' and 'rejected' (and 'prompt' unless both are conversations sharing their first messages); " +
                $"the object has {(names.Count == 0 ? "no fields" : string.Join(", ", names))}");
        }
        row.TryGetProperty("prompt", out var prompt);
        if (chosen.ValueKind == JsonValueKind.String && rejected.ValueKind == JsonValueKind.String)
        {
            if (prompt.ValueKind != JsonValueKind.String) throw Bad("field 'prompt' must be a string when 'chosen' and 'rejected' are texts");
            return Texts(prompt.GetString()!, chosen.GetString()!, rejected.GetString()!, source, Bad);
        }
        if (chosen.ValueKind != JsonValueKind.Array || rejected.ValueKind != JsonValueKind.Array)
            throw Bad("'chosen' and 'rejected' must both be texts or both be lists of {role, content} messages");
        var chosenTurns = Messages(chosen, "chosen", Bad);
        var rejectedTurns = Messages(rejected, "rejected", Bad);
        List<Turn> shared;
        if (prompt.ValueKind == JsonValueKind.Array)
            shared = Messages(prompt, "prompt", Bad);
        else if (prompt.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null)
        {
            // TRL's implicit prompt: the messages both conversations begin with.
            int common = 0;
            while (common < Math.Min(chosenTurns.Count, rejectedTurns.Count) - 1 && chosenTurns[common] == rejectedTurns[common]) common++;
            shared = chosenTurns.Take(common).ToList();
            chosenTurns = chosenTurns.Skip(common).ToList();
            rejectedTurns = rejectedTurns.Skip(common).ToList();
        }
        else throw Bad("field 'prompt' must be a list of messages when 'chosen' and 'rejected' are conversations");
        if (shared.Count == 0) throw Bad("the conversations share no prompt: give 'prompt' as a list of messages, or begin both with the same messages");
        foreach (var (turns, name) in new[] { (chosenTurns, "chosen"), (rejectedTurns, "rejected") })
            if (turns.Count == 0 || turns[^1].Role != "assistant")
                throw Bad($"'{name}' must end with an assistant message after the prompt: it is what the model is asked to prefer or avoid");
        return new PreferencePair(
            new LanguageModelExample(null, null, null, [.. shared, .. chosenTurns], source) { TargetsFrom = shared.Count },
            new LanguageModelExample(null, null, null, [.. shared, .. rejectedTurns], source) { TargetsFrom = shared.Count },
            source);
    }

    static PreferencePair Texts(string prompt, string chosen, string rejected, string source, Func<string, DataFormatException> bad)
    {
        if (chosen.Length == 0 || rejected.Length == 0) throw bad($"field '{(chosen.Length == 0 ? "chosen" : "rejected")}' is empty: nothing to compare");
        if (chosen == rejected) throw bad("'chosen' and 'rejected' are the same text: the pair says nothing");
        return new PreferencePair(new LanguageModelExample(null, prompt, chosen, null, source), new LanguageModelExample(null, prompt, rejected, null, source), source);
    }

    static List<Turn> Messages(JsonElement list, string field, Func<string, DataFormatException> bad)
    {
        var turns = new List<Turn>();
        int n = 0;
        foreach (var m in list.EnumerateArray())
        {
            n++;
            if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                || !m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw bad($"'{field}' message {n} must be an object with string fields 'role' and 'content'");
            if (!Roles.Contains(role.GetString()))
                throw bad($"'{field}' message {n} has role '{role.GetString()}'; expected {string.Join(", ", Roles)}");
            turns.Add(new Turn(role.GetString()!, content.GetString()!));
        }
        return turns;
    }
}
