using System.Text.Json;

namespace SharpTune.Data;

/// <summary>Where a JSON row stands in its file: a line of a JSONL file, or an element of a .json array.</summary>
internal readonly record struct RowPlace(string Path, int? Line, int Element)
{
    /// <summary><c>path:line</c> or <c>path: element N</c>, as examples name their source.</summary>
    public string Source => Line is { } line ? $"{Path}:{line}" : $"{Path}: element {Element}";

    /// <summary>The error a bad row stops the read with, naming this place.</summary>
    public DataFormatException Error(string reason) =>
        Line is { } line ? new DataFormatException(Path, line, reason) : new DataFormatException(Path, $"element {Element}: {reason}");
}

/// <summary>
/// The JSON rows of a data file, one object per line (JSONL) or an array of objects (.json), each handed to a row reader
/// with its <see cref="RowPlace"/>; a bad row stops the read with its place, or is skipped when the collector skips.
/// </summary>
internal static class JsonRows
{
    public static void ReadLines<T>(string path, RowCollector<T> rows, Func<JsonElement, RowPlace, T> read)
    {
        var lines = DataReader.ReadLines(path);
        for (int i = 0; i < lines.Count; i++)
        {
            if (DataReader.IsBlank(lines[i])) continue;
            var place = new RowPlace(path, i + 1, 0);
            string text = lines[i];
            rows.AddOrSkip(() =>
            {
                JsonDocument document;
                try
                {
                    document = JsonDocument.Parse(text);
                }
                catch (JsonException e)
                {
                    throw place.Error($"invalid JSON; expected one JSON object per line ({e.Message})");
                }
                using (document) return read(document.RootElement, place);
            });
        }
    }

    /// <param name="example">What a .json file of this kind holds, for the message when it holds something else.</param>
    public static void ReadArray<T>(string path, RowCollector<T> rows, Func<JsonElement, RowPlace, T> read, string example = "")
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Data file not found: {path}", path);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new DataFormatException(path, $"not valid JSON ({e.Message}); a .json file holds an array of objects, a .jsonl file one object per line");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Array)
                throw new DataFormatException(path, $"a .json file must hold an array of objects{example}; use .jsonl for one object per line");
            int index = 0;
            foreach (var element in document.RootElement.EnumerateArray())
            {
                var place = new RowPlace(path, null, ++index);
                rows.AddOrSkip(() => read(element, place));
            }
        }
    }
}
