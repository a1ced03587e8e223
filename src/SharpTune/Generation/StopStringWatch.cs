using System.Text;

namespace SharpTune.Generation;

/// <summary>
/// Watches one sequence's generated text for stop strings as tokens come. Each token's text is appended and only the
/// tail that could hold a new match (the added text plus the longest stop string less one character before it) is
/// searched, so a long generation costs linear time, not a decode of the whole output per token.
/// </summary>
internal sealed class StopStringWatch(IReadOnlyList<string> stops)
{
    readonly int longest = stops.Max(s => s.Length);
    readonly StringBuilder text = new();
    readonly List<int> ends = [];                     // text length after each token
    int stopAt = -1;

    /// <summary>Adds a token whose text is <paramref name="added"/>; true when the text now holds a stop string.</summary>
    public bool Append(string added)
    {
        int searchFrom = Math.Max(0, text.Length - (longest - 1));
        text.Append(added);
        return Record(searchFrom);
    }

    /// <summary>
    /// Adds a token given the whole text so far (a decoder without an incremental form). When the text only grew, this is
    /// <see cref="Append"/>; when an earlier character changed (a split UTF-8 character completed), everything is searched again.
    /// </summary>
    public bool Replace(string whole)
    {
        if (whole.Length >= text.Length && whole.AsSpan(0, text.Length).SequenceEqual(text.ToString()))
            return Append(whole[text.Length..]);
        text.Clear().Append(whole);
        return Record(0);
    }

    /// <summary>How many tokens end at or before the first stop string: the output keeps those.</summary>
    public int TokensBeforeStop
    {
        get
        {
            if (stopAt < 0) return ends.Count;
            int keep = ends.Count;
            while (keep > 0 && ends[keep - 1] > stopAt) keep--;
            return keep;
        }
    }

    bool Record(int searchFrom)
    {
        ends.Add(text.Length);
        if (text.Length - searchFrom < stops.Min(s => s.Length)) return false;
        string tail = text.ToString(searchFrom, text.Length - searchFrom);
        int found = stops.Select(s => tail.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
        if (found < 0) return false;
        stopAt = searchFrom + found;
        return true;
    }
}
