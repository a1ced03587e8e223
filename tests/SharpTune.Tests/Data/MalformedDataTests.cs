using SharpTune.Data;

namespace SharpTune.Tests.Data;

/// <summary>Every kind of bad row names the file and the 1-based line, and says what was expected.</summary>
public sealed class MalformedDataTests : IDisposable
{
    readonly TempFiles files = new();

    public void Dispose() => files.Dispose();

    public static TheoryData<string, string, LabelKind, int, string> BadRows => new()
    {
        { "count.csv", "text,label\nok,a\na,b,c\n", LabelKind.SingleLabel, 3, "expected 2 fields (text, label), found 3" },
        { "few.csv", "text,label\nonly text\n", LabelKind.SingleLabel, 2, "expected 2 fields" },
        { "quote.csv", "text,label\nok,a\n\"never closed,b\nmore,c\n", LabelKind.SingleLabel, 3, "unterminated quoted field" },
        { "after.csv", "text,label\n\"quoted\"tail,a\n", LabelKind.SingleLabel, 2, "unexpected 't' after the closing quote" },
        { "empty.csv", "text,label\nok,a\n  ,b\n", LabelKind.SingleLabel, 3, "empty text in field 'text'" },
        { "nolabel.csv", "text,label\nhello,\n", LabelKind.SingleLabel, 2, "empty label in field 'label'" },
        { "multi.csv", "text,label\nhello,a||b\n", LabelKind.MultiLabel, 2, "empty label in 'a||b'" },
        { "number.csv", "text,label\nhello,3,5\n", LabelKind.Regression, 2, "expected 2 fields" },
        { "nan.csv", "text,label\nhello,high\n", LabelKind.Regression, 2, "'high' in field 'label' is not a number" },
        { "count.tsv", "text\tlabel\nok\ta\nno tab here\n", LabelKind.SingleLabel, 3, "expected 2 fields" },
        { "json.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n\n{\"text\": \"b\", \"label\"\n", LabelKind.SingleLabel, 3, "invalid JSON" },
        { "array.jsonl", "[\"a\", \"x\"]\n", LabelKind.SingleLabel, 1, "expected a JSON object, found an array" },
        { "field.jsonl", "{\"sentence\": \"a\", \"label\": \"x\"}\n", LabelKind.SingleLabel, 1, "missing field 'text'; the object has fields: 'sentence', 'label'" },
        { "label.jsonl", "{\"text\": \"a\", \"label\": null}\n", LabelKind.SingleLabel, 1, "missing field 'label'" },
        { "object.jsonl", "{\"text\": {\"a\": 1}, \"label\": \"x\"}\n", LabelKind.SingleLabel, 1, "field 'text' is an object; expected a string, number or boolean" },
        { "list.jsonl", "{\"text\": \"a\", \"label\": [\"x\", \"y\"]}\n", LabelKind.SingleLabel, 1, "arrays are accepted only as multi-label labels" },
        { "blank.jsonl", "{\"text\": \"\", \"label\": \"x\"}\n", LabelKind.SingleLabel, 1, "empty text" },
        { "tags.conll", "EU B-ORG\nrejects\n", LabelKind.SingleLabel, 2, "expected 'token label', found only 'rejects'" },
    };

    [Theory]
    [MemberData(nameof(BadRows))]
    public void Bad_row_names_file_line_and_expectation(string name, string content, LabelKind labels, int line, string expected)
    {
        string path = files.Write(name, content);
        var options = new DataOptions { Labels = labels };

        var error = Assert.Throws<DataFormatException>(() =>
            name.EndsWith(".conll") ? DataReader.ReadTokens(path, options) : DataReader.ReadText(path, options));

        Assert.StartsWith($"{path}:{line}: ", error.Message);
        Assert.Contains(expected, error.Message);
        Assert.Equal($"{path}:{line}", error.Location);
    }

    [Fact]
    public void Invalid_utf8_is_reported_with_its_line_even_when_skipping()
    {
        string path = files.WriteBytes("latin1.csv", [.. "text,label\nok,a\ncaf"u8, 0xE9, .. ",b\n"u8]);
        var error = Assert.Throws<DataFormatException>(() => DataReader.ReadText(path, new DataOptions { SkipBadRows = true }));
        Assert.StartsWith($"{path}:3: ", error.Message);
        Assert.Contains("UTF-8", error.Message);
    }

    [Fact]
    public void Missing_file_names_the_path()
    {
        string path = files.PathOf("absent.csv");
        var error = Assert.Throws<FileNotFoundException>(() => DataReader.ReadText(path));
        Assert.Contains(path, error.Message);
        Assert.Equal(path, error.FileName);
    }

    [Theory]
    [InlineData("empty.csv", "")]
    [InlineData("blank.csv", "\r\n\r\n")]
    [InlineData("header.csv", "text,label\n")]
    [InlineData("blank.jsonl", "\n\n")]
    [InlineData("blank.conll", "-DOCSTART- O\n\n")]
    public void Empty_data_set_is_an_error(string name, string content)
    {
        string path = files.Write(name, content);
        var error = Assert.Throws<DataFormatException>(() =>
            name.EndsWith(".conll") ? DataReader.ReadTokens(path) : DataReader.ReadText(path));
        Assert.StartsWith($"{path}: contains no examples", error.Message);
    }

    [Fact]
    public void All_rows_skipped_is_an_error_that_quotes_the_first_reason()
    {
        string path = files.Write("bad.jsonl", "nope\n");
        var error = Assert.Throws<DataFormatException>(() => DataReader.ReadText(path, new DataOptions { SkipBadRows = true }));
        Assert.Contains("all 1 rows were skipped", error.Message);
        Assert.Contains($"{path}:1: invalid JSON", error.Message);
    }

    [Fact]
    public void Bad_options_are_rejected_before_reading()
    {
        Assert.Throws<ArgumentException>(() => new DataOptions { LabelSeparator = "" }.Validate());
        Assert.Throws<ArgumentException>(() => new DataOptions { TextPairColumn = "text" }.Validate());
        Assert.Throws<ArgumentException>(() => new DataOptions { LabelColumn = "text" }.Validate());
    }
}
