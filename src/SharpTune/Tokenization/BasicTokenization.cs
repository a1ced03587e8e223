using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace SharpTune.Tokenization;

/// <summary>
/// The two places where Microsoft.ML.Tokenizers' BertTokenizer (2.0.1) departs from Hugging Face's
/// BasicTokenizer, patched from outside so that ids match transformers. Lowercasing, accent stripping,
/// CJK splitting and WordPiece itself stay in the library.
/// </summary>
internal static partial class BasicTokenization
{
    /// <summary>
    /// Follows HF <c>BasicTokenizer._clean_text</c>. The library drops tab, newline and carriage return as
    /// control characters ("a\nb" becomes the single word "ab"), keeps format characters such as the soft
    /// hyphen, and throws on a lone surrogate; HF turns the first three into spaces and drops the rest.
    /// </summary>
    public static string Clean(string text)
    {
        if (!NeedsCleaning(text)) return text;
        var builder = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length;)
        {
            // A lone surrogate decodes as U+FFFD, which HF drops like any U+FFFD.
            Rune.DecodeFromUtf16(text.AsSpan(i), out var rune, out int used);
            if (rune.Value is 0 or 0xFFFD) { }
            else if (IsHfWhitespace(rune)) builder.Append(' ');
            else if (!IsHfControl(Rune.GetUnicodeCategory(rune))) builder.Append(text.AsSpan(i, used));
            i += used;
        }
        return builder.ToString();
    }

    static bool NeedsCleaning(string text)
    {
        foreach (char c in text)
        {
            if (c is '\t' or '\n' or '\r' or '\0' or '\uFFFD' || char.IsSurrogate(c)) return true;
            var category = char.GetUnicodeCategory(c);
            if (category == UnicodeCategory.SpaceSeparator ? c != ' ' : IsHfControl(category)) return true;
        }
        return false;
    }

    static bool IsHfWhitespace(Rune rune) =>
        rune.Value is ' ' or '\t' or '\n' or '\r' || Rune.GetUnicodeCategory(rune) == UnicodeCategory.SpaceSeparator;

    // HF: every category starting with "C" (Cc, Cf, Cs, Co, Cn) is control, except \t \n \r handled above.
    static bool IsHfControl(UnicodeCategory category) => category is UnicodeCategory.Control or UnicodeCategory.Format
        or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned;

    // HF BasicTokenizer._is_punctuation: every Unicode P* character plus all ASCII non-alphanumerics
    // (so $ + < = > ^ ` | ~ are punctuation too).
    const string Punctuation = @"\p{P}!-/:-@\[-`{-~";

    /// <summary>
    /// Words are maximal runs of anything that is neither whitespace nor punctuation; each punctuation mark
    /// is a word of its own (HF <c>whitespace_tokenize</c> + <c>_run_split_on_punc</c>). The library's default
    /// pre-tokenizer keeps only word characters and P* punctuation, so it silently drops symbols:
    /// "$5" loses the "$", and an emoji vanishes instead of becoming [UNK].
    /// </summary>
    [GeneratedRegex($@"[^\s{Punctuation}]+|[{Punctuation}]")]
    private static partial Regex WordOrPunctuation();

    /// <summary>
    /// Special tokens written in the text stay whole, as in transformers. Normalization runs before
    /// pre-tokenization, so an uncased tokenizer must also know their lowercased spelling.
    /// </summary>
    public static PreTokenizer CreatePreTokenizer(IReadOnlyDictionary<string, int> specialTokens, bool lowerCase)
    {
        var tokens = new Dictionary<string, int>(specialTokens);
        if (lowerCase)
            foreach (var (token, id) in specialTokens)
                tokens.TryAdd(token.ToLowerInvariant(), id);
        return new RegexPreTokenizer(WordOrPunctuation(), tokens);
    }
}
