namespace SharpTune.Data;

/// <summary>
/// CoNLL token files: one <c>token ... label</c> line per word (first column the token, last the label,
/// any columns between ignored), a blank line between sentences, <c>-DOCSTART-</c> lines ignored
/// (they also end a sentence). Columns are split on tabs when the line has one, so a token may
/// contain spaces; otherwise on any run of whitespace.
/// </summary>
internal static class ConllParser
{
    public static void Read(List<string> lines, string path, bool labelled, RowCollector<TokenExample> rows)
    {
        var words = new List<string>();
        var labels = new List<string>();
        int first = 0;            // line of the sentence's first word
        DataFormatException? bad = null;

        void EndSentence(int last)
        {
            if (bad is not null)
            {
                // Dropping a single line would shift the labels of the rest of the sentence, so
                // the whole sentence goes, and the skipped-rows list says which lines it covered.
                if (!rows.SkipBadRows) throw bad;
                rows.Skip(new DataFormatException(bad.Location, $"{bad.Reason}; skipped the sentence on lines {first}-{last}"));
            }
            else if (words.Count > 0)
            {
                rows.Add(new TokenExample(words.ToArray(), labelled ? labels.ToArray() : null, $"{path}:{first}"));
            }
            words.Clear();
            labels.Clear();
            bad = null;
            first = 0;
        }

        for (int i = 0; i < lines.Count; i++)
        {
            int line = i + 1;
            var columns = Columns(lines[i]);
            if (columns.Length == 0 || columns[0] == "-DOCSTART-")
            {
                EndSentence(line - 1);
                continue;
            }
            if (first == 0) first = line;
            if (bad is not null) continue;
            if (labelled && columns.Length < 2)
            {
                bad = new DataFormatException(path, line, $"expected 'token label', found only '{columns[0]}' (a line without a label)");
                continue;
            }
            words.Add(columns[0]);
            if (labelled) labels.Add(columns[^1]);
        }
        EndSentence(lines.Count);
    }

    static string[] Columns(string line)
    {
        const StringSplitOptions Options = StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries;
        // A null separator array splits on every Unicode whitespace character.
        return line.Contains('\t') ? line.Split('\t', Options) : line.Split((char[]?)null, Options);
    }
}
