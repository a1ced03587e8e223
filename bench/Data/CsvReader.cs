using System.Text;

namespace SharpTune.Bench.Data;

/// <summary>
/// Reads RFC 4180 CSV: fields separated by commas, records by CRLF or LF, a quoted field may hold
/// commas, doubled quotes and line breaks. Errors name the file and the line the record starts on.
/// </summary>
public static class CsvReader
{
    /// <summary>The records after the header, as dictionaries from header name to field.</summary>
    public static IEnumerable<(int Line, Dictionary<string, string> Fields)> ReadRecords(string path)
    {
        using var reader = new StreamReader(path, Encoding.UTF8);
        string[]? header = null;
        foreach ((int line, List<string> fields) in ReadRaw(reader, path))
        {
            if (header is null)
            {
                header = fields.ToArray();
                continue;
            }
            if (fields.Count != header.Length)
                throw new InvalidDataException($"{path}:{line}: {fields.Count} fields, expected {header.Length} ({string.Join(",", header)}).");
            var record = new Dictionary<string, string>(header.Length, StringComparer.Ordinal);
            for (int i = 0; i < header.Length; i++) record[header[i]] = fields[i];
            yield return (line, record);
        }
        if (header is null) throw new InvalidDataException($"{path}: empty file, expected a header line.");
    }

    static IEnumerable<(int Line, List<string> Fields)> ReadRaw(TextReader reader, string path)
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        int line = 1, recordLine = 1;
        bool quoted = false, fieldWasQuoted = false;
        int c;
        while ((c = reader.Read()) >= 0)
        {
            char ch = (char)c;
            if (quoted)
            {
                if (ch == '"')
                {
                    if (reader.Peek() == '"') { reader.Read(); field.Append('"'); }
                    else quoted = false;
                }
                else
                {
                    if (ch == '\n') line++;
                    field.Append(ch);
                }
                continue;
            }
            switch (ch)
            {
                case '"' when field.Length == 0 && !fieldWasQuoted:
                    quoted = fieldWasQuoted = true;
                    break;
                case '"':
                    throw new InvalidDataException($"{path}:{line}: a quote inside an unquoted field, or text after a closing quote.");
                case ',':
                    fields.Add(field.ToString());
                    field.Clear();
                    fieldWasQuoted = false;
                    break;
                case '\r' when reader.Peek() == '\n':
                    break;
                case '\n':
                    fields.Add(field.ToString());
                    yield return (recordLine, fields);
                    fields = new List<string>();
                    field.Clear();
                    fieldWasQuoted = false;
                    recordLine = ++line;
                    break;
                default:
                    if (fieldWasQuoted)
                        throw new InvalidDataException($"{path}:{line}: text after a closing quote.");
                    field.Append(ch);
                    break;
            }
        }
        if (quoted) throw new InvalidDataException($"{path}:{recordLine}: a quoted field is never closed.");
        if (fields.Count > 0 || field.Length > 0 || fieldWasQuoted)
        {
            fields.Add(field.ToString());
            yield return (recordLine, fields);
        }
    }
}
