using System.Text.RegularExpressions;

namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// Splits text into words before BPE: a sequence of regexes, each splitting every piece further into its matches
/// and the text between them (HF <c>Split</c> with behaviour "Isolated", llama.cpp <c>unicode_regex_split</c>).
/// Patterns follow the models' tokenizer.json files and llama.cpp's <c>llm_tokenizer_bpe</c> table.
/// .NET matches \p{L} per UTF-16 unit, so letters outside the BMP count as non-letters (as in Microsoft.ML.Tokenizers).
/// </summary>
public sealed class PreTokenizer
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

    readonly Regex[] regexes;

    public PreTokenizer(IEnumerable<string> patterns)
    {
        regexes = patterns.Select(p => new Regex(p, RegexOptions.Compiled | RegexOptions.CultureInvariant)).ToArray();
    }

    public IReadOnlyList<string> Patterns => regexes.Select(r => r.ToString()).ToArray();

    /// <summary>The pre-tokenizer llama.cpp uses for <paramref name="pre"/>; null or empty means "default", as in llama.cpp.</summary>
    internal static (PreTokenizer PreTokenizer, bool IgnoreMerges, bool AddBos) ForGguf(string? pre, string source)
    {
        var name = string.IsNullOrEmpty(pre) ? "default" : pre;
        if (!GgufPresets.TryGetValue(name, out var preset))
            throw new NotSupportedException(
                $"{source}: tokenizer.ggml.pre '{name}' is not supported; supported: {string.Join(", ", GgufPresets.Keys)}.");
        return (new PreTokenizer(preset.Patterns), preset.IgnoreMerges, preset.AddBos);
    }

    public List<string> Split(string text)
    {
        var pieces = new List<string> { text };
        foreach (var regex in regexes)
        {
            var next = new List<string>(pieces.Count * 2);
            foreach (var piece in pieces)
            {
                int last = 0;
                foreach (var m in regex.EnumerateMatches(piece))
                {
                    if (m.Length == 0) continue;
                    if (m.Index > last) next.Add(piece[last..m.Index]);
                    next.Add(piece.Substring(m.Index, m.Length));
                    last = m.Index + m.Length;
                }
                if (last < piece.Length) next.Add(piece[last..]);
            }
            pieces = next;
        }
        return pieces;
    }
}
