using System.Text;

namespace SharpTune.Data;

/// <summary>
/// Reads users' labelled data files into examples. Every file is read as UTF-8 (a UTF-8 BOM is
/// skipped; a UTF-16 BOM, as in Excel's "Unicode text" export, is honoured), with LF or CRLF line
/// ends, with or without a final newline. Blank lines outside quoted fields are ignored.
/// <para>TSV quoting: a field is unquoted only when it is a well-formed quoted field, i.e. it starts
/// and ends with <c>"</c> and every quote inside is doubled, as pandas and Excel write it. Any other
/// quote is plain text, because NLP data (e.g. GLUE) is full of unbalanced quotes that a quote-aware
/// reader would silently merge across rows. TSV fields therefore cannot contain tabs or newlines.</para>
/// </summary>
public static class DataReader
{
    /// <summary>Reads a CSV, TSV or JSONL file of a sequence task.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DataFormatException">A bad row (unless skipped), a missing column, or no examples.</exception>
    public static DataSet<TextExample> ReadText(string path, DataOptions? options = null)
    {
        options = (options ?? new DataOptions()).Validate();
        var format = options.Format == DataFormat.Auto ? DataOptions.DetectFormat(path) : options.Format;
        var lines = ReadLines(path);
        var rows = new RowCollector<TextExample>(path, options.SkipBadRows);
        switch (format)
        {
            case DataFormat.Csv: DelimitedParser.Read(lines, path, ',', options, rows); break;
            case DataFormat.Tsv: DelimitedParser.Read(lines, path, '\t', options, rows); break;
            case DataFormat.Jsonl: JsonlParser.Read(lines, path, options, rows); break;
            default: throw new ArgumentException($"{path}: {format} data holds token labels; read it with {nameof(ReadTokens)}");
        }
        return rows.Finish();
    }

    /// <summary>Reads a CoNLL file of a token task. Any extension is accepted, since CoNLL files
    /// come as .txt, .conll, .bio, .tsv and more.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DataFormatException">A bad line (unless skipped) or no sentences.</exception>
    public static DataSet<TokenExample> ReadTokens(string path, DataOptions? options = null)
    {
        options = (options ?? new DataOptions()).Validate();
        if (options.Format is not (DataFormat.Auto or DataFormat.Conll))
            throw new ArgumentException($"{path}: token data must be CoNLL, not {options.Format}");
        if (options.Labels is not (LabelKind.SingleLabel or LabelKind.Unlabelled))
            throw new ArgumentException($"{path}: token data has one label per token; {options.Labels} labels are not supported");
        var lines = ReadLines(path);
        var rows = new RowCollector<TokenExample>(path, options.SkipBadRows);
        ConllParser.Read(lines, path, options.Labels == LabelKind.SingleLabel, rows);
        return rows.Finish();
    }

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// The file's lines without their line ends. Lines are split on LF bytes before decoding (LF never
    /// occurs inside a UTF-8 sequence) so that invalid UTF-8 is reported with its exact line. Invalid
    /// text always throws, even with SkipBadRows: a file in another encoding (Latin-1, cp1252) would
    /// otherwise lose every non-ASCII row.
    /// </summary>
    internal static List<string> ReadLines(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Data file not found: {path}", path);
        var bytes = File.ReadAllBytes(path);
        var lines = new List<string>();
        if (bytes.Length >= 2 && (bytes[0], bytes[1]) is (0xFF, 0xFE) or (0xFE, 0xFF))
        {
            var encoding = bytes[0] == 0xFF ? Encoding.Unicode : Encoding.BigEndianUnicode;
            foreach (var line in encoding.GetString(bytes, 2, bytes.Length - 2).Split('\n'))
                lines.Add(line.EndsWith('\r') ? line[..^1] : line);
        }
        else
        {
            var span = bytes.AsSpan();
            if (span.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) span = span[3..];
            while (true)
            {
                int end = span.IndexOf((byte)'\n');
                var line = end < 0 ? span : span[..end];
                if (line.Length > 0 && line[^1] == '\r') line = line[..^1];
                try
                {
                    lines.Add(StrictUtf8.GetString(line));
                }
                catch (DecoderFallbackException)
                {
                    throw new DataFormatException(path, lines.Count + 1, "is not valid UTF-8; save the file as UTF-8");
                }
                if (end < 0) break;
                span = span[(end + 1)..];
            }
        }
        // A final newline leaves one empty string behind; it is not a line of the file.
        if (lines.Count > 0 && lines[^1].Length == 0) lines.RemoveAt(lines.Count - 1);
        return lines;
    }

    internal static bool IsBlank(string line) => string.IsNullOrWhiteSpace(line);
}

/// <summary>Collects the examples of one file, and the rows skipped when the user allows it.</summary>
internal sealed class RowCollector<T>(string path, bool skipBadRows)
{
    readonly List<T> examples = [];
    readonly List<string> skipped = [];

    /// <summary>Used as an exception filter: in strict mode the error propagates unchanged.</summary>
    public bool SkipBadRows => skipBadRows;

    public void Add(T example) => examples.Add(example);

    /// <summary>Adds what <paramref name="read"/> gives, or, when bad rows are skipped, records the row it refused.</summary>
    public void AddOrSkip(Func<T> read)
    {
        try
        {
            examples.Add(read());
        }
        catch (DataFormatException e) when (skipBadRows)
        {
            Skip(e);
        }
    }

    public void Skip(DataFormatException error) => skipped.Add(error.Message);

    /// <summary>A row another reader already skipped and described.</summary>
    public void Skip(string described) => skipped.Add(described);

    public DataSet<T> Finish()
    {
        if (examples.Count > 0) return new DataSet<T>(examples, skipped);
        throw new DataFormatException(path, skipped.Count == 0
            ? "contains no examples"
            : $"contains no valid examples: all {skipped.Count} rows were skipped; the first: {skipped[0]}");
    }
}
