using SharpTune.Data;

namespace SharpTune.Tests.Data;

public sealed class JsonlReadTests : IDisposable
{
    readonly TempFiles files = new();

    public void Dispose() => files.Dispose();

    [Fact]
    public void Strings_numbers_and_booleans_with_blank_lines_and_crlf()
    {
        string path = files.Write("train.jsonl",
            "{\"text\": \"Großartig! 👍\", \"label\": \"pos\", \"extra\": [1, 2]}\r\n" +
            "\r\n" +
            "{\"label\": 1, \"text\": \"one\"}\r\n" +
            "   \r\n" +
            "{\"text\": \"flag\", \"label\": true}",
            bom: true);

        var data = DataReader.ReadText(path);

        Assert.Equal(
            [
                new TextExample("Großartig! 👍", null, "pos", $"{path}:1"),
                new TextExample("one", null, "1", $"{path}:3"),
                new TextExample("flag", null, "true", $"{path}:5"),
            ],
            data.Examples);
    }

    [Fact]
    public void Numbers_keep_the_text_they_were_written_with()
    {
        string path = files.Write("stsb.jsonl", "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"score\": 2.50}\n");
        var options = new DataOptions { TextColumn = "sentence1", TextPairColumn = "sentence2", LabelColumn = "score", Labels = LabelKind.Regression };

        var example = Assert.Single(DataReader.ReadText(path, options).Examples);

        Assert.Equal(new TextExample("a", "b", "2.50", $"{path}:1"), example);
    }

    [Fact]
    public void Multi_label_arrays_are_joined_with_the_separator()
    {
        string path = files.Write("tags.ndjson",
            "{\"text\": \"a\", \"label\": [\"sports\", \"news\"]}\n" +
            "{\"text\": \"b\", \"label\": []}\n" +
            "{\"text\": \"c\", \"label\": \"x;y\"}\n" +
            "{\"text\": \"d\", \"label\": [\"x;y\"]}\n");
        var options = new DataOptions { Labels = LabelKind.MultiLabel, LabelSeparator = ";", SkipBadRows = true };

        var data = DataReader.ReadText(path, options);

        Assert.Equal(["sports;news", "", "x;y"], data.Examples.Select(e => e.Label));
        Assert.StartsWith($"{path}:4: label 'x;y' in field 'label' contains the label separator", Assert.Single(data.SkippedRows));
    }

    [Fact]
    public void Skip_bad_rows_keeps_the_good_ones()
    {
        string path = files.Write("mixed.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{broken\n42\n{\"text\": \"b\", \"label\": \"y\"}\n");
        var data = DataReader.ReadText(path, new DataOptions { SkipBadRows = true });
        Assert.Equal(["a", "b"], data.Examples.Select(e => e.Text));
        Assert.Equal(2, data.SkippedCount);
        Assert.StartsWith($"{path}:2: invalid JSON", data.SkippedRows[0]);
        Assert.StartsWith($"{path}:3: expected a JSON object, found a number", data.SkippedRows[1]);
    }
}
