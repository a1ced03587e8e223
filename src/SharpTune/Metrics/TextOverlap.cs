namespace SharpTune.Metrics;

/// <summary>
/// How close a generated text is to a reference: exact match (after trimming) and ROUGE-L (Lin 2004), the F-measure of
/// the longest common subsequence of whitespace-separated, lower-cased tokens, as the <c>rouge-score</c> package computes
/// <c>rougeL</c> without stemming.
/// </summary>
public static class TextOverlap
{
    public static bool ExactMatch(string candidate, string reference) =>
        string.Equals(candidate.Trim(), reference.Trim(), StringComparison.Ordinal);

    public static double RougeL(string candidate, string reference)
    {
        var c = Tokens(candidate);
        var r = Tokens(reference);
        if (c.Length == 0 || r.Length == 0) return c.Length == r.Length ? 1 : 0;
        int lcs = LongestCommonSubsequence(c, r);
        if (lcs == 0) return 0;
        double precision = (double)lcs / c.Length, recall = (double)lcs / r.Length;
        return 2 * precision * recall / (precision + recall);
    }

    static string[] Tokens(string text) =>
        text.ToLowerInvariant().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    static int LongestCommonSubsequence(string[] a, string[] b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        foreach (string token in a)
        {
            for (int j = 1; j <= b.Length; j++)
                current[j] = token == b[j - 1] ? previous[j - 1] + 1 : Math.Max(previous[j], current[j - 1]);
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
