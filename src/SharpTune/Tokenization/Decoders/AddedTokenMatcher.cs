namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// Finds added tokens in text before pre-tokenization (HF <c>AddedVocabulary</c>, llama.cpp
/// <c>tokenizer_st_partition</c>): at each position the longest matching token wins. Special tokens match only
/// when asked (<c>parseSpecial</c>); non-special added tokens always match.
/// </summary>
sealed class AddedTokenMatcher
{
    /// <summary>A piece of the input: raw text (Id null) or one added token.</summary>
    public readonly record struct Part(string? Text, int? Id, int Offset);

    readonly Dictionary<char, (string Content, int Id, bool Special)[]> byFirstChar;

    public AddedTokenMatcher(IEnumerable<(string Content, int Id, bool Special)> tokens)
    {
        byFirstChar = tokens
            .Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    public bool IsEmpty => byFirstChar.Count == 0;

    public List<Part> Split(string text, bool parseSpecial)
    {
        var parts = new List<Part>();
        int textStart = 0;
        for (int i = 0; i < text.Length;)
        {
            if (byFirstChar.TryGetValue(text[i], out var candidates) && Match(text, i, candidates, parseSpecial) is { } hit)
            {
                if (i > textStart) parts.Add(new Part(text[textStart..i], null, textStart));
                parts.Add(new Part(null, hit.Id, i));
                i += hit.Length;
                textStart = i;
            }
            else i++;
        }
        if (textStart < text.Length) parts.Add(new Part(text[textStart..], null, textStart));
        return parts;
    }

    static (int Id, int Length)? Match(string text, int at, (string Content, int Id, bool Special)[] candidates, bool parseSpecial)
    {
        foreach (var (content, id, special) in candidates)
        {
            if (special && !parseSpecial) continue;
            if (string.CompareOrdinal(text, at, content, 0, content.Length) == 0 && at + content.Length <= text.Length)
                return (id, content.Length);
        }
        return null;
    }
}
