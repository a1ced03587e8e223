using System.Text;
using SharpTune.Data;

namespace SharpTune.Tests.Data;

public sealed class DelimitedReadTests : IDisposable
{
    readonly TempFiles files = new();

    public void Dispose() => files.Dispose();

    [Fact]
    public void Csv_with_bom_crlf_multiline_quotes_and_non_ascii()
    {
        string path = files.Write("train.csv",
            "text,label\r\n" +
            "\"Hello, world\",pos\r\n" +
            "\"Line one\r\nline \"\"two\"\"\",neg\r\n" +
            "\r\n" +
            "Ünïcödé — 日本語 😀, neu ",  // no final newline; label padded with spaces
            bom: true);

        var data = DataReader.ReadText(path);

        Assert.Empty(data.SkippedRows);
        Assert.Equal(
            [
                new TextExample("Hello, world", null, "pos", $"{path}:2"),
                new TextExample("Line one\nline \"two\"", null, "neg", $"{path}:3"),
                new TextExample("Ünïcödé — 日本語 😀", null, "neu", $"{path}:6"),
            ],
            data.Examples);
    }

    [Fact]
    public void Csv_reads_named_columns_in_any_order_and_text_pairs()
    {
        string path = files.Write("nli.csv", "id,label,premise,hypothesis\n1,entailment,A man sleeps.,Someone rests.\n2,contradiction,It rains.,\"It is dry, sunny.\"\n");
        var options = new DataOptions { TextColumn = "premise", TextPairColumn = "hypothesis" };

        var data = DataReader.ReadText(path, options);

        Assert.Equal(new TextExample("A man sleeps.", "Someone rests.", "entailment", $"{path}:2"), data.Examples[0]);
        Assert.Equal(new TextExample("It rains.", "It is dry, sunny.", "contradiction", $"{path}:3"), data.Examples[1]);
    }

    [Fact]
    public void Csv_empty_last_field_and_literal_quote_inside_unquoted_field()
    {
        string path = files.Write("x.csv", "text,label,note\nsay 5\" screen,a,\n");
        var example = Assert.Single(DataReader.ReadText(path).Examples);
        Assert.Equal("say 5\" screen", example.Text);
    }

    [Fact]
    public void Unnamed_trailing_columns_from_spreadsheets_are_allowed_but_named_duplicates_are_not()
    {
        string excel = files.Write("excel.csv", "text,label,,\r\nhi,a,,\r\n");
        Assert.Equal("a", Assert.Single(DataReader.ReadText(excel).Examples).Label);

        string twice = files.Write("twice.csv", "text,label,text\nhi,a,b\n");
        Assert.StartsWith($"{twice}:1: header names column 'text' twice", Assert.Throws<DataFormatException>(() => DataReader.ReadText(twice)).Message);
    }

    [Fact]
    public void Tsv_unquotes_only_well_formed_quoted_fields()
    {
        string path = files.Write("glue.tsv",
            "sentence\tlabel\n" +
            "\"He said \"\"hi\"\"\"\t1\n" +   // pandas/Excel style quoting
            "\"unbalanced start\t0\n" +       // GLUE style: quote is text
            "it's \"fine\t1\n" +
            "\"a\" and \"b\"\t0\n");           // starts and ends with a quote, but inner quotes are not doubled

        var texts = DataReader.ReadText(path, new DataOptions { TextColumn = "sentence" }).Examples.Select(e => e.Text);

        Assert.Equal(["He said \"hi\"", "\"unbalanced start", "it's \"fine", "\"a\" and \"b\""], texts);
    }

    [Fact]
    public void Multi_label_and_regression_labels_are_normalised()
    {
        string multi = files.Write("m.csv", "text,label\na,sports | politics\nb,\n");
        var labels = DataReader.ReadText(multi, new DataOptions { Labels = LabelKind.MultiLabel }).Examples.Select(e => e.Label);
        Assert.Equal(["sports|politics", ""], labels);

        string regression = files.Write("r.csv", "text,score\na,3.5\nb,-1e-2\n");
        var scores = DataReader.ReadText(regression, new DataOptions { Labels = LabelKind.Regression, LabelColumn = "score" }).Examples.Select(e => e.Label);
        Assert.Equal(["3.5", "-1e-2"], scores);
    }

    [Fact]
    public void Unlabelled_reading_needs_no_label_column()
    {
        string path = files.Write("predict.csv", "text\nfirst\nsecond\n");
        var data = DataReader.ReadText(path, new DataOptions { Labels = LabelKind.Unlabelled });
        Assert.All(data.Examples, e => Assert.Null(e.Label));
        Assert.Equal(2, data.Examples.Count);
    }

    [Fact]
    public void Utf16_file_with_bom_is_read()
    {
        string path = files.WriteBytes("excel.tsv", [.. Encoding.Unicode.GetPreamble(), .. Encoding.Unicode.GetBytes("text\tlabel\r\nçà va\tx\r\n")]);
        Assert.Equal("çà va", Assert.Single(DataReader.ReadText(path).Examples).Text);
    }

    [Fact]
    public void Missing_column_lists_the_columns_found()
    {
        string path = files.Write("cols.csv", "sentence,label\nhello,a\n");
        var error = Assert.Throws<DataFormatException>(() => DataReader.ReadText(path));
        Assert.Contains($"{path}:1", error.Message);
        Assert.Contains("'text'", error.Message);
        Assert.Contains("'sentence', 'label'", error.Message);
    }

    [Fact]
    public void Skip_bad_rows_counts_and_lists_each_one()
    {
        string path = files.Write("mixed.csv",
            "text,label\n" +
            "good one,a\n" +
            "bad,row,extra\n" +
            "\"never closed,b\n" +
            "good two,b\n" +
            " ,c\n");

        var data = DataReader.ReadText(path, new DataOptions { SkipBadRows = true });

        Assert.Equal(["good one", "good two"], data.Examples.Select(e => e.Text));
        Assert.Equal(3, data.SkippedCount);
        Assert.StartsWith($"{path}:3: expected 2 fields", data.SkippedRows[0]);
        Assert.StartsWith($"{path}:4: unterminated quoted field", data.SkippedRows[1]);
        Assert.StartsWith($"{path}:6: empty text", data.SkippedRows[2]);
    }

    [Fact]
    public void Format_is_chosen_by_extension_unless_given()
    {
        string path = files.Write("data.txt", "text\tlabel\na\tb\n");
        Assert.Throws<ArgumentException>(() => DataReader.ReadText(path));
        Assert.Equal("b", DataReader.ReadText(path, new DataOptions { Format = DataFormat.Tsv }).Examples[0].Label);
    }
}
