using SharpTune.Data;

namespace SharpTune.Tests.Data;

public sealed class ConllReadTests : IDisposable
{
    readonly TempFiles files = new();

    public void Dispose() => files.Dispose();

    [Fact]
    public void Docstart_blank_lines_extra_columns_and_tabs()
    {
        string path = files.Write("train.conll",
            "-DOCSTART- -X- -X- O\r\n" +
            "\r\n" +
            "EU NNP B-NP B-ORG\r\n" +
            "rejects VBZ B-VP O\r\n" +
            "\r\n" +
            "\r\n" +
            "New York\tB-LOC\r\n" +    // with a tab, a token may contain spaces
            "Zürich\tI-LOC\r\n" +
            "-DOCSTART- O\r\n" +
            "Peter  B-PER",            // no final newline, two spaces
            bom: true);

        var data = DataReader.ReadTokens(path);

        Assert.Equal(3, data.Examples.Count);
        Assert.Equal(["EU", "rejects"], data.Examples[0].Words);
        Assert.Equal(["B-ORG", "O"], data.Examples[0].Labels!);
        Assert.Equal($"{path}:3", data.Examples[0].Source);
        Assert.Equal(["New York", "Zürich"], data.Examples[1].Words);
        Assert.Equal(["B-LOC", "I-LOC"], data.Examples[1].Labels!);
        Assert.Equal($"{path}:7", data.Examples[1].Source);
        Assert.Equal(["Peter"], data.Examples[2].Words);
        Assert.Equal($"{path}:10", data.Examples[2].Source);
    }

    [Fact]
    public void Unlabelled_mode_reads_bare_tokens()
    {
        string path = files.Write("predict.txt", "EU\nrejects\n\nPeter\n");
        var data = DataReader.ReadTokens(path, new DataOptions { Labels = LabelKind.Unlabelled });
        Assert.Equal([["EU", "rejects"], ["Peter"]], data.Examples.Select(e => e.Words.ToArray()));
        Assert.All(data.Examples, e => Assert.Null(e.Labels));
    }

    [Fact]
    public void Skipping_drops_the_whole_sentence_and_says_which_lines()
    {
        string path = files.Write("bad.conll", "EU B-ORG\nrejects\nGerman B-MISC\n\nPeter B-PER\n");

        var data = DataReader.ReadTokens(path, new DataOptions { SkipBadRows = true });

        Assert.Equal(["Peter"], Assert.Single(data.Examples).Words);
        Assert.Equal($"{path}:2: expected 'token label', found only 'rejects' (a line without a label); skipped the sentence on lines 1-3",
            Assert.Single(data.SkippedRows));
    }

    [Fact]
    public void Token_reading_rejects_sequence_options()
    {
        string path = files.Write("x.conll", "a O\n");
        Assert.Throws<ArgumentException>(() => DataReader.ReadTokens(path, new DataOptions { Labels = LabelKind.Regression }));
        Assert.Throws<ArgumentException>(() => DataReader.ReadTokens(path, new DataOptions { Format = DataFormat.Csv }));
        Assert.Throws<ArgumentException>(() => DataReader.ReadText(path));
    }
}
