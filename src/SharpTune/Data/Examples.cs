namespace SharpTune.Data;

/// <summary>
/// One example of a sequence task (classification, multi-label, regression, sentence pairs).
/// <paramref name="Label"/> stays a string so one record serves every task: a class name, a number
/// for regression, or for multi-label the label names joined by <see cref="DataOptions.LabelSeparator"/>
/// (empty when the example has none). It is null when the data was read without labels.
/// </summary>
/// <param name="Source">Where the row starts, as <c>path:line</c> (1-based), for error messages.</param>
public sealed record TextExample(string Text, string? TextPair, string? Label, string Source);

/// <summary>
/// One sentence of a token task (NER, POS): the words as written in the file and one label per word,
/// or null labels when the data was read without labels.
/// </summary>
/// <param name="Source">Where the sentence's first word is, as <c>path:line</c> (1-based).</param>
public sealed record TokenExample(IReadOnlyList<string> Words, IReadOnlyList<string>? Labels, string Source);

/// <summary>
/// The examples read from one file, and every row that <see cref="DataOptions.SkipBadRows"/> skipped,
/// each as <c>path:line: reason</c>, so that nothing is dropped without the user being told.
/// </summary>
public sealed record DataSet<T>(IReadOnlyList<T> Examples, IReadOnlyList<string> SkippedRows)
{
    public int SkippedCount => SkippedRows.Count;
}
