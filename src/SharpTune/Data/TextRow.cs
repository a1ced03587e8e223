using System.Globalization;

namespace SharpTune.Data;

/// <summary>
/// Turns the raw fields of one row (whatever the file format) into a <see cref="TextExample"/>,
/// checking them the same way for CSV, TSV and JSONL so the error messages match.
/// </summary>
internal static class TextRow
{
    /// <param name="text">The text field, or null when the row lacks it (JSONL).</param>
    public static TextExample ToExample(string? text, string? pair, string? label, DataOptions options, string path, int line)
    {
        CheckText(text, options.TextColumn, path, line);
        if (options.TextPairColumn is not null) CheckText(pair, options.TextPairColumn, path, line);
        string? normalised = options.Labels == LabelKind.Unlabelled ? null : NormaliseLabel(label, options, path, line);
        return new TextExample(text!, options.TextPairColumn is null ? null : pair, normalised, $"{path}:{line}");
    }

    static void CheckText(string? text, string column, string path, int line)
    {
        if (text is null) throw new DataFormatException(path, line, $"missing field '{column}'");
        if (string.IsNullOrWhiteSpace(text)) throw new DataFormatException(path, line, $"empty text in field '{column}'");
    }

    /// <summary>
    /// Labels are trimmed: a stray space after a comma would otherwise make "pos " a class of its own.
    /// Multi-label lists are re-joined trimmed; an empty list means "no labels" and is allowed.
    /// </summary>
    static string NormaliseLabel(string? label, DataOptions options, string path, int line)
    {
        string column = options.LabelColumn;
        if (label is null) throw new DataFormatException(path, line, $"missing label field '{column}'");
        label = label.Trim();
        switch (options.Labels)
        {
            case LabelKind.MultiLabel:
                if (label.Length == 0) return label;
                var parts = label.Split(options.LabelSeparator).Select(p => p.Trim()).ToArray();
                if (parts.Any(p => p.Length == 0))
                    throw new DataFormatException(path, line,
                        $"empty label in '{label}' in field '{column}'; expected labels separated by '{options.LabelSeparator}'");
                return string.Join(options.LabelSeparator, parts);
            case LabelKind.Regression:
                if (!double.TryParse(label, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
                    throw new DataFormatException(path, line,
                        $"label '{label}' in field '{column}' is not a number; regression expects e.g. 3.5 (with a '.' decimal point)");
                return label;
            default:
                if (label.Length == 0) throw new DataFormatException(path, line, $"empty label in field '{column}'");
                return label;
        }
    }
}
