using System.Text;

namespace SharpTune.DatasetConverter;

/// <summary>Writes RFC 4180 CSV: CRLF between records, a field quoted when it holds a comma, quote, CR or LF, quotes doubled.</summary>
public sealed class CsvWriter : IDisposable
{
    readonly StreamWriter writer;

    public CsvWriter(string path, params string[] header)
    {
        // UTF-8 without a byte-order mark, so the first header name reads as "text" everywhere.
        writer = new StreamWriter(path, append: false, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
        WriteRecord(header);
    }

    public void WriteRecord(params string[] fields)
    {
        for (int i = 0; i < fields.Length; i++)
        {
            if (i > 0) writer.Write(',');
            writer.Write(Quote(fields[i]));
        }
        writer.Write("\r\n");
    }

    public static string Quote(string field) =>
        field.AsSpan().IndexOfAny(",\"\r\n") < 0 ? field : "\"" + field.Replace("\"", "\"\"") + "\"";

    public void Dispose() => writer.Dispose();
}
