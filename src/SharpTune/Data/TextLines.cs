using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Data;

/// <summary>
/// Texts given one per line, as <c>generate</c> reads prompts and <c>eval</c> reads texts to score: a JSONL line gives
/// the first of <c>fields</c> it has, any other line is the text itself. Blank lines are skipped; errors name file:line.
/// </summary>
public static class TextLines
{
    public static IEnumerable<(string Line, string Where)> OfFile(string path) =>
        File.ReadLines(path).Select((line, i) => (line, $"{path}:{i + 1}"));

    /// <summary>Lines as they come from <paramref name="reader"/> (standard input), named <c>name:N</c>.</summary>
    public static IEnumerable<(string Line, string Where)> Of(TextReader reader, string name)
    {
        int number = 0;
        while (reader.ReadLine() is { } line) yield return (line, $"{name}:{++number}");
    }

    /// <param name="unescapeNewlines">Plain lines: <c>\n</c> written in the line becomes a line break (a prompt may span lines).</param>
    public static List<string> Read(IEnumerable<(string Line, string Where)> lines, bool jsonl, IReadOnlyList<string> fields, bool unescapeNewlines = false)
    {
        var texts = new List<string>();
        foreach (var (line, where) in lines)
        {
            if (line.Trim().Length == 0) continue;
            if (!jsonl)
            {
                texts.Add(unescapeNewlines ? line.Replace("\\n", "\n", StringComparison.Ordinal) : line);
                continue;
            }
            try
            {
                var node = JsonNode.Parse(line);
                texts.Add(fields.Select(f => node?[f]?.GetValue<string>()).FirstOrDefault(t => t is not null)
                    ?? throw new InvalidDataException($"{where}: no {string.Join(" or ", fields.Select(f => $"\"{f}\""))} field"));
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{where}: not valid JSON ({e.Message})", e);
            }
        }
        return texts;
    }

    public static bool IsJsonl(string path) => path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase);
}
