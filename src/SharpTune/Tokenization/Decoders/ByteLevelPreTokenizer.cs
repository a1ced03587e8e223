using System.Globalization;
using System.Text.RegularExpressions;

namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// Splits text into words before BPE: a sequence of regexes, each splitting every piece further into its matches
/// and the text between them (HF <c>Split</c> with behaviour "Isolated", llama.cpp <c>unicode_regex_split</c>).
/// Patterns follow the models' tokenizer.json files and llama.cpp's <c>llm_tokenizer_bpe</c> table.
/// </summary>
public sealed class ByteLevelPreTokenizer
{
    /// <summary>GPT-2 (openai encoder.py; HF ByteLevel with use_regex).</summary>
    public const string Gpt2Pattern =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Llama 3: case-insensitive contractions, digits in groups of up to three, newlines kept apart.</summary>
    public const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Qwen2: as Llama 3 but every digit alone.</summary>
    public const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Every digit alone (HF Digits with individual_digits; SmolLM splits digits before GPT-2's regex).</summary>
    public const string IndividualDigitsPattern = @"\p{N}";

    /// <summary>GGUF <c>tokenizer.ggml.pre</c> names this library maps, with their regex sequence and flags.</summary>
    static readonly Dictionary<string, (string[] Patterns, bool IgnoreMerges, bool AddBos)> GgufPresets = new()
    {
        ["gpt-2"] = ([Gpt2Pattern], false, false),
        ["llama-bpe"] = ([Llama3Pattern], true, true),
        ["llama3"] = ([Llama3Pattern], true, true),
        ["llama-v3"] = ([Llama3Pattern], true, true),
        ["qwen2"] = ([Qwen2Pattern], false, false),
        ["smollm"] = ([IndividualDigitsPattern, Gpt2Pattern], false, false),
        ["default"] = ([@"[\p{P}\$\+<=>\^~\|]+", Gpt2Pattern, @"\p{N}+", "[0-9][0-9][0-9]"], false, false),
    };

    public static IReadOnlyCollection<string> SupportedGgufNames => GgufPresets.Keys;

    /// <summary>The <c>tokenizer.ggml.pre</c> name whose preset is exactly these patterns with this ignore_merges flag (the reverse of <see cref="ForGguf"/>), or null.</summary>
    internal static string? GgufName(IReadOnlyList<string> patterns, bool ignoreMerges) =>
        GgufPresets.FirstOrDefault(p => p.Value.IgnoreMerges == ignoreMerges && p.Value.Patterns.SequenceEqual(patterns)).Key;

    readonly Regex[] regexes;

    public ByteLevelPreTokenizer(IEnumerable<string> patterns)
    {
        regexes = patterns.Select(p => new Regex(p, RegexOptions.Compiled | RegexOptions.CultureInvariant)).ToArray();
    }

    public IReadOnlyList<string> Patterns => regexes.Select(r => r.ToString()).ToArray();

    /// <summary>The pre-tokenizer llama.cpp uses for <paramref name="pre"/>; null or empty means "default", as in llama.cpp.</summary>
    internal static (ByteLevelPreTokenizer PreTokenizer, bool IgnoreMerges, bool AddBos) ForGguf(string? pre, string source)
    {
        var name = string.IsNullOrEmpty(pre) ? "default" : pre;
        if (!GgufPresets.TryGetValue(name, out var preset))
            throw new NotSupportedException(
                $"{source}: tokenizer.ggml.pre '{name}' is not supported; supported: {string.Join(", ", GgufPresets.Keys)}.");
        return (new ByteLevelPreTokenizer(preset.Patterns), preset.IgnoreMerges, preset.AddBos);
    }

    public List<string> Split(string text)
    {
        // .NET regexes see UTF-16 units: a code point outside the BMP is two surrogates (category Cs), so \p{L}
        // would miss 𝐀 or 𠀀 where HF and llama.cpp see letters. Such text is matched on a stand-in with one BMP
        // character of the same Unicode category per code point, and the pieces are mapped back.
        var (work, offsets) = StandIn(text);
        var pieces = new List<(int Start, int Length)> { (0, work.Length) };
        foreach (var regex in regexes)
        {
            var next = new List<(int, int)>(pieces.Count * 2);
            foreach (var (start, length) in pieces)
            {
                int last = 0;
                foreach (var m in regex.EnumerateMatches(work.AsSpan(start, length)))
                {
                    if (m.Length == 0) continue;
                    if (m.Index > last) next.Add((start + last, m.Index - last));
                    next.Add((start + m.Index, m.Length));
                    last = m.Index + m.Length;
                }
                if (last < length) next.Add((start + last, length - last));
            }
            pieces = next;
        }
        return offsets is null
            ? pieces.Select(p => text.Substring(p.Start, p.Length)).ToList()
            : pieces.Select(p => text[offsets[p.Start]..offsets[p.Start + p.Length]]).ToList();
    }

    /// <summary>A BMP character of each Unicode category (from U+00A1 on, so no regex metacharacter or ASCII letter).</summary>
    static readonly char[] CategoryStandIns = BuildStandIns();

    static char[] BuildStandIns()
    {
        var standIns = new char[32];
        for (int c = 0xFFFD; c >= 0xA1; c--)
            if (!char.IsSurrogate((char)c)) standIns[(int)char.GetUnicodeCategory((char)c)] = (char)c;
        for (int i = 0; i < standIns.Length; i++) if (standIns[i] == '\0') standIns[i] = '\u00A9';
        return standIns;
    }

    /// <summary>The text with each surrogate pair replaced by one stand-in, and where each stand-in position starts in the text; (text, null) when there is none.</summary>
    static (string Work, int[]? Offsets) StandIn(string text)
    {
        int first = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDBFF');
        if (first < 0) return (text, null);
        var work = new System.Text.StringBuilder(text.Length);
        var offsets = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length; i++)
        {
            offsets.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                work.Append(CategoryStandIns[(int)CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]))]);
                i++;
            }
            else work.Append(text[i]);
        }
        offsets.Add(text.Length);
        return (work.ToString(), offsets.ToArray());
    }
}
