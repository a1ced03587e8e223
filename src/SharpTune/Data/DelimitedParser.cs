using System.Text;

namespace SharpTune.Data;

/// <summary>
/// CSV (RFC 4180) and TSV records with a header row. A record's line number is the line it starts on;
/// quoted CSV fields may span lines, and their line ends become "\n" whatever the file used, so the
/// same data gives the same text on every platform.
/// </summary>
internal static class DelimitedParser
{
    public static void Read(List<string> lines, string path, char delimiter, DataOptions options, RowCollector<TextExample> rows)
    {
        int index = 0;
        while (index < lines.Count && DataReader.IsBlank(lines[index])) index++;
        if (index == lines.Count) throw new DataFormatException(path, "contains no examples (expected a header row naming the columns, then one row per example)");

        // A bad header is fatal even with SkipBadRows: without it no row can be interpreted.
        int headerLine = index + 1;
        var header = NextRecord(lines, ref index, delimiter, path).Select(h => h.Trim()).ToArray();
        // Unnamed columns (trailing commas in spreadsheet exports) may repeat: they cannot be selected anyway.
        var duplicate = header.Where(h => h.Length > 0).GroupBy(h => h, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new DataFormatException(path, headerLine, $"header names column '{duplicate.Key}' twice");

        int text = Column(header, options.TextColumn, "text", path, headerLine);
        int pair = options.TextPairColumn is null ? -1 : Column(header, options.TextPairColumn, "text pair", path, headerLine);
        int label = options.Labels == LabelKind.Unlabelled ? -1 : Column(header, options.LabelColumn, "label", path, headerLine);

        while (index < lines.Count)
        {
            if (DataReader.IsBlank(lines[index])) { index++; continue; }
            int line = index + 1;
            try
            {
                var fields = NextRecord(lines, ref index, delimiter, path);
                if (fields.Count != header.Length)
                {
                    string hint = fields.Count > header.Length
                        ? $"; quote fields that contain '{Show(delimiter)}'" + (delimiter == '\t' ? " (TSV fields cannot contain tabs)" : "")
                        : "";
                    throw new DataFormatException(path, line,
                        $"expected {header.Length} fields ({string.Join(", ", header)}), found {fields.Count}{hint}");
                }
                rows.Add(TextRow.ToExample(fields[text], pair < 0 ? null : fields[pair], label < 0 ? null : fields[label], options, path, line));
            }
            catch (DataFormatException e) when (rows.SkipBadRows)
            {
                rows.Skip(e);
            }
        }
    }

    static int Column(string[] header, string name, string role, string path, int headerLine)
    {
        int i = Array.IndexOf(header, name);
        if (i < 0)
            throw new DataFormatException(path, headerLine,
                $"no {role} column '{name}'; the header has columns: {string.Join(", ", header.Select(h => $"'{h}'"))}");
        return i;
    }

    static string Show(char delimiter) => delimiter == '\t' ? "\\t" : delimiter.ToString();

    /// <summary>Parses the record starting at <paramref name="index"/> and moves past it. After an error
    /// <paramref name="index"/> points where reading can resume, so SkipBadRows loses only that record.</summary>
    static List<string> NextRecord(List<string> lines, ref int index, char delimiter, string path)
    {
        if (delimiter != '\t') return CsvRecord(lines, ref index, delimiter, path);
        return lines[index++].Split('\t').Select(f => UnquoteTsv(f)).ToList();
    }

    static List<string> CsvRecord(List<string> lines, ref int index, char delimiter, string path)
    {
        int start = index;
        string line = lines[index];
        int pos = 0;
        var fields = new List<string>();
        var field = new StringBuilder();
        while (true)
        {
            if (pos < line.Length && line[pos] == '"')
            {
                pos++;
                while (true)
                {
                    if (pos == line.Length)
                    {
                        // The quoted field continues on the next line.
                        if (++index == lines.Count)
                        {
                            // Resume right after the opening line: the rows it swallowed are most likely fine.
                            index = start + 1;
                            throw new DataFormatException(path, start + 1,
                                $"unterminated quoted field {fields.Count + 1}: its opening '\"' is never closed before the end of the file");
                        }
                        field.Append('\n');
                        line = lines[index];
                        pos = 0;
                        continue;
                    }
                    char c = line[pos++];
                    if (c != '"') field.Append(c);
                    else if (pos < line.Length && line[pos] == '"') { field.Append('"'); pos++; }
                    else break;
                }
                if (pos < line.Length && line[pos] != delimiter)
                {
                    int problemLine = index + 1;
                    index++;
                    string span = problemLine == start + 1 ? "" : $" (the record spans lines {start + 1}-{problemLine})";
                    throw new DataFormatException(path, start + 1,
                        $"unexpected '{line[pos]}' after the closing quote of field {fields.Count + 1}{span}; " +
                        "expected a delimiter or the end of the line (write a quote inside a quoted field as \"\")");
                }
            }
            else
            {
                // Unquoted field: RFC 4180 forbids quotes here, but taking them literally is what
                // spreadsheets and Python's csv module do, and loses nothing.
                int end = line.IndexOf(delimiter, pos);
                if (end < 0) end = line.Length;
                field.Append(line, pos, end - pos);
                pos = end;
            }
            fields.Add(field.ToString());
            field.Clear();
            if (pos == line.Length)
            {
                index++;
                return fields;
            }
            pos++; // the delimiter; if it ends the line, the next pass adds the empty last field
        }
    }

    /// <summary>Unquotes a TSV field only when it is well-formed (see <see cref="DataReader"/>).</summary>
    internal static string UnquoteTsv(string field)
    {
        if (field.Length < 2 || field[0] != '"' || field[^1] != '"') return field;
        var inner = field.AsSpan(1, field.Length - 2);
        for (int i = 0; i < inner.Length; i++)
        {
            if (inner[i] != '"') continue;
            if (i + 1 < inner.Length && inner[i + 1] == '"') i++;
            else return field;
        }
        return inner.ToString().Replace("\"\"", "\"");
    }
}
