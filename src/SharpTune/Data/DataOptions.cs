namespace SharpTune.Data;

/// <summary>The file formats <see cref="DataReader"/> understands.</summary>
public enum DataFormat
{
    /// <summary>Chosen from the file extension (see <see cref="DataOptions.DetectFormat"/>).</summary>
    Auto,
    /// <summary>RFC 4180: header row, quoted fields, doubled quotes, quoted fields may span lines.</summary>
    Csv,
    /// <summary>Tab-separated, header row, one record per line (see <see cref="DataReader"/> for quotes).</summary>
    Tsv,
    /// <summary>One JSON object per line.</summary>
    Jsonl,
    /// <summary><c>token label</c> per line, blank line between sentences.</summary>
    Conll,
}

/// <summary>What the label column holds; decides how each label is checked and normalised.</summary>
public enum LabelKind
{
    /// <summary>One class name per example (or per token for token tasks).</summary>
    SingleLabel,
    /// <summary>Zero or more class names joined by <see cref="DataOptions.LabelSeparator"/> (a JSONL array also works).</summary>
    MultiLabel,
    /// <summary>A number, parsed with the invariant culture (<c>3.5</c>, not <c>3,5</c>).</summary>
    Regression,
    /// <summary>No labels are read: data for prediction. CoNLL lines may then hold just the token.</summary>
    Unlabelled,
}

/// <summary>How to read a data file. The defaults read a labelled single-label file with a
/// <c>text</c> and a <c>label</c> column and stop at the first bad row.</summary>
public sealed record DataOptions
{
    public DataFormat Format { get; init; } = DataFormat.Auto;

    /// <summary>Header name (CSV, TSV) or field name (JSONL) of the text.</summary>
    public string TextColumn { get; init; } = "text";

    /// <summary>Column of the second text of a sentence-pair task; null for single texts.</summary>
    public string? TextPairColumn { get; init; }

    /// <summary>Column of the label; ignored when <see cref="Labels"/> is <see cref="LabelKind.Unlabelled"/>.</summary>
    public string LabelColumn { get; init; } = "label";

    public LabelKind Labels { get; init; } = LabelKind.SingleLabel;

    /// <summary>Joins the labels of one multi-label example, e.g. <c>sports|politics</c>.</summary>
    public string LabelSeparator { get; init; } = "|";

    /// <summary>Skip malformed rows instead of throwing; each skipped row is listed in
    /// <see cref="DataSet{T}.SkippedRows"/>. Problems of the whole file (missing column, not UTF-8)
    /// still throw, since no row could be read correctly.</summary>
    public bool SkipBadRows { get; init; }

    /// <summary>The format implied by the extension: .csv, .tsv/.tab, .jsonl/.ndjson, .conll/.conllx/.bio/.iob.</summary>
    public static DataFormat DetectFormat(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".csv" => DataFormat.Csv,
        ".tsv" or ".tab" => DataFormat.Tsv,
        ".jsonl" or ".ndjson" => DataFormat.Jsonl,
        ".conll" or ".conllx" or ".bio" or ".iob" => DataFormat.Conll,
        var ext => throw new ArgumentException(
            $"{path}: cannot tell the data format from the extension '{ext}'; use .csv, .tsv, .jsonl or .conll, or set the format explicitly"),
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming the first option that cannot work.</summary>
    public DataOptions Validate()
    {
        if (string.IsNullOrWhiteSpace(TextColumn)) throw new ArgumentException("TextColumn must name a column");
        if (TextPairColumn is not null && string.IsNullOrWhiteSpace(TextPairColumn))
            throw new ArgumentException("TextPairColumn must name a column, or be null for single texts");
        if (string.IsNullOrWhiteSpace(LabelColumn)) throw new ArgumentException("LabelColumn must name a column");
        if (string.IsNullOrEmpty(LabelSeparator)) throw new ArgumentException("LabelSeparator must not be empty");
        if (TextPairColumn == TextColumn) throw new ArgumentException($"TextPairColumn and TextColumn are both '{TextColumn}'");
        if (Labels != LabelKind.Unlabelled && (LabelColumn == TextColumn || LabelColumn == TextPairColumn))
            throw new ArgumentException($"LabelColumn '{LabelColumn}' is also a text column");
        return this;
    }
}

/// <summary>
/// How a user asks to read one file with an already trained model (<c>eval</c>, <c>predict</c>): each value given
/// replaces what the model was trained with; null keeps it.
/// </summary>
public sealed record DataReading
{
    public DataFormat? Format { get; init; }
    public string? TextColumn { get; init; }
    public string? TextPairColumn { get; init; }
    public string? LabelColumn { get; init; }
    public string? LabelSeparator { get; init; }
    public bool? SkipBadRows { get; init; }
}
