using SharpTune.Data;

namespace SharpTune.Tests.Data;

public sealed class LabelMapTests : IDisposable
{
    readonly TempFiles files = new();

    public void Dispose() => files.Dispose();

    static TextExample Text(string? label, int line = 1) => new("t", null, label, $"train.csv:{line}");

    [Fact]
    public void Labels_are_distinct_and_sorted_ordinally()
    {
        var map = LabelMap.FromExamples([Text("neg"), Text("pos"), Text("Neutral"), Text("neg"), Text("ämbivalent")]);
        // Ordinal: uppercase before lowercase, non-ASCII last, whatever the machine's culture.
        Assert.Equal(["Neutral", "neg", "pos", "ämbivalent"], map.Labels);
        Assert.Equal(2, map.Encode(Text("pos")));
        Assert.Equal("neg", map.GetLabel(1));
    }

    [Fact]
    public void Token_labels_come_from_every_token()
    {
        var map = LabelMap.FromExamples([
            new TokenExample(["EU", "rejects"], ["B-ORG", "O"], "a.conll:1"),
            new TokenExample(["Peter"], ["B-PER"], "a.conll:4"),
        ]);
        Assert.Equal(["B-ORG", "B-PER", "O"], map.Labels);
        Assert.Equal([0, 2], map.Encode(new TokenExample(["x", "y"], ["B-ORG", "O"], "dev.conll:1")));
    }

    [Fact]
    public void Multi_label_examples_contribute_each_label_and_encode_as_multi_hot()
    {
        var map = LabelMap.FromExamples([Text("news|sports"), Text(""), Text("arts")], "|");
        Assert.Equal(["arts", "news", "sports"], map.Labels);
        Assert.Equal([0f, 1f, 1f], map.EncodeMultiHot(Text("sports|news"), "|"));
        Assert.Equal([0f, 0f, 0f], map.EncodeMultiHot(Text(""), "|"));
    }

    [Fact]
    public void Unseen_label_names_its_file_and_line()
    {
        var map = LabelMap.FromExamples([Text("neg"), Text("pos")]);

        var error = Assert.Throws<DataFormatException>(() => map.Encode(new TextExample("t", null, "neutral", "dev.csv:17")));

        Assert.Equal("dev.csv:17: label 'neutral' was not seen in the training data; known labels: 'neg', 'pos'", error.Message);
        var tokenError = Assert.Throws<DataFormatException>(() => map.Encode(new TokenExample(["a"], ["B-X"], "dev.conll:3")));
        Assert.StartsWith("dev.conll:3: label 'B-X'", tokenError.Message);
    }

    [Fact]
    public void Unlabelled_example_cannot_build_or_encode()
    {
        Assert.Throws<DataFormatException>(() => LabelMap.FromExamples([Text(null, 4)]));
        var map = new LabelMap(["a"]);
        Assert.StartsWith("train.csv:9:", Assert.Throws<DataFormatException>(() => map.Encode(Text(null, 9))).Message);
    }

    [Fact]
    public void Save_and_load_round_trip_in_hugging_face_shape()
    {
        var map = new LabelMap(["O", "B-PER", "I-PER"]); // explicit order is kept
        string path = files.PathOf("labels.json");

        map.Save(path);
        var loaded = LabelMap.Load(path);

        Assert.Equal(map.Labels, loaded.Labels);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path));
        Assert.Equal("B-PER", json.RootElement.GetProperty("id2label").GetProperty("1").GetString());
        Assert.Equal(2, json.RootElement.GetProperty("label2id").GetProperty("I-PER").GetInt32());
    }

    [Fact]
    public void Loads_the_labels_of_a_model_config()
    {
        string config = """{"hidden_size": 32, "id2label": {"1": "POSITIVE", "0": "NEGATIVE"}, "label2id": {"NEGATIVE": 0, "POSITIVE": 1}}""";
        Assert.Equal(["NEGATIVE", "POSITIVE"], LabelMap.FromJson(config).Labels);
    }

    [Theory]
    [InlineData("""{"id2label": {"0": "a", "2": "b"}}""", "id2label key '2' is not an id in 0..1")]
    [InlineData("""{"id2label": {"0": "a", "1": "a"}}""", "label 'a' appears twice")]
    [InlineData("""{"id2label": {"0": "a", "1": "b"}, "label2id": {"a": 1}}""", "label2id maps 'a' to 1")]
    [InlineData("""{"label2id": {"a": 0}}""", "no 'id2label' entries")]
    [InlineData("""{"id2label": [""", "not a valid label map")]
    public void Bad_label_file_is_an_error_naming_the_file(string json, string expected)
    {
        var error = Assert.Throws<DataFormatException>(() => LabelMap.FromJson(json, "model/labels.json"));
        Assert.StartsWith("model/labels.json: ", error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void Missing_label_file_names_the_path()
    {
        string path = files.PathOf("none.json");
        Assert.Contains(path, Assert.Throws<FileNotFoundException>(() => LabelMap.Load(path)).Message);
    }
}
