namespace SharpTune.Metrics;

/// <summary>An entity span within one sentence: words <c>Start</c> to <c>End - 1</c>.</summary>
public sealed record Entity(string Type, int Start, int End);

/// <summary>
/// Finds entities in a tag sequence the way conlleval does, so scores match the CoNLL shared tasks
/// and seqeval's default mode. Accepts IOB2 (<c>B-X I-X O</c>), IOB1 and BIOES (<c>E-X</c>, <c>S-X</c>).
/// An <c>I-</c> after <c>O</c> or after a different type starts a new entity instead of being dropped.
/// A tag with no B-/I-/E-/S- prefix (other than <c>O</c>) is read as <c>I-tag</c>, so IO-tagged data
/// (<c>PER PER O</c>) also works.
/// </summary>
public static class BioTags
{
    public static IReadOnlyList<Entity> Entities(IReadOnlyList<string> tags)
    {
        var entities = new List<Entity>();
        (char Prefix, string Type) previous = ('O', "");
        int start = -1;
        for (int i = 0; i <= tags.Count; i++)
        {
            // One step past the end acts as an O, closing the last entity.
            var current = i < tags.Count ? Parse(tags[i]) : ('O', "");
            if (start >= 0 && Ends(previous, current))
            {
                entities.Add(new Entity(previous.Type, start, i));
                start = -1;
            }
            if (Starts(previous, current)) start = i;
            previous = current;
        }
        return entities;
    }

    static (char Prefix, string Type) Parse(string tag)
    {
        if (tag == "O") return ('O', "");
        if (tag.Length >= 2 && tag[1] == '-' && tag[0] is 'B' or 'I' or 'E' or 'S') return (tag[0], tag[2..]);
        return ('I', tag);
    }

    /// <summary>Whether the entity open at the previous tag closes before the current one.</summary>
    static bool Ends((char Prefix, string Type) previous, (char Prefix, string Type) current)
    {
        if (previous.Prefix == 'O') return false;
        if (previous.Prefix is 'E' or 'S') return true;
        if (current.Prefix is 'B' or 'S' or 'O') return true;
        return previous.Type != current.Type; // I or E continuing: only the same type continues
    }

    /// <summary>Whether a new entity opens at the current tag.</summary>
    static bool Starts((char Prefix, string Type) previous, (char Prefix, string Type) current)
    {
        if (current.Prefix == 'O') return false;
        if (current.Prefix is 'B' or 'S') return true;
        if (previous.Prefix is 'O' or 'E' or 'S') return true;
        return previous.Type != current.Type;
    }
}
