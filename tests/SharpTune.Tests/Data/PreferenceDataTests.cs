using System.Text.Json.Nodes;
using SharpTune.Data;

namespace SharpTune.Tests.Data;

/// <summary>Preference rows in TRL's forms, and the errors a user's file gets, naming file and line.</summary>
public class PreferenceDataTests
{
    static string Write(TestModels.TempFolder temp, string name, params string[] lines)
    {
        string path = temp.File(name);
        File.WriteAllLines(path, lines);
        return path;
    }

    static JsonArray Turns(params (string Role, string Content)[] turns) =>
        new([.. turns.Select(t => (JsonNode)new JsonObject { ["role"] = t.Role, ["content"] = t.Content })]);

    [Fact]
    public void Reads_text_pairs_explicit_conversations_and_an_implicit_shared_prompt()
    {
        using var temp = new TestModels.TempFolder();
        string path = Write(temp, "pairs.jsonl",
            new JsonObject { ["prompt"] = "Q:", ["chosen"] = " yes", ["rejected"] = " no" }.ToJsonString(),
            "",
            new JsonObject
            {
                ["prompt"] = Turns(("user", "hi")), ["chosen"] = Turns(("assistant", "hello")), ["rejected"] = Turns(("assistant", "go away")),
            }.ToJsonString(),
            new JsonObject
            {
                ["chosen"] = Turns(("system", "be kind"), ("user", "hi"), ("assistant", "hello")),
                ["rejected"] = Turns(("system", "be kind"), ("user", "hi"), ("assistant", "no")),
            }.ToJsonString());
        var pairs = PreferenceData.Read(path).Examples;
        Assert.Equal(3, pairs.Count);

        Assert.Equal(("Q:", " yes", " no"), (pairs[0].Chosen.Prompt, pairs[0].Chosen.Completion, pairs[0].Rejected.Completion));
        Assert.Equal($"{path}:1", pairs[0].Source);

        Assert.Equal(1, pairs[1].Chosen.TargetsFrom);
        Assert.Equal(["user", "assistant"], pairs[1].Rejected.Messages!.Select(t => t.Role));
        Assert.Equal("go away", pairs[1].Rejected.Messages![^1].Content);
        Assert.Equal($"{path}:3", pairs[1].Source);

        // TRL's implicit prompt: the messages both lists begin with.
        Assert.Equal(2, pairs[2].Chosen.TargetsFrom);
        Assert.Equal(2, pairs[2].Rejected.TargetsFrom);
        Assert.Equal("no", pairs[2].Rejected.Messages![2].Content);
    }

    [Fact]
    public void Reads_csv_with_prompt_chosen_and_rejected_columns()
    {
        using var temp = new TestModels.TempFolder();
        string path = Write(temp, "pairs.csv", "prompt,chosen,rejected", "\"Q, please:\",yes,no", "R:,fine,bad");
        var pairs = PreferenceData.Read(path).Examples;
        Assert.Equal(2, pairs.Count);
        Assert.Equal(("Q, please:", "yes", "no"), (pairs[0].Chosen.Prompt, pairs[0].Chosen.Completion, pairs[0].Rejected.Completion));
    }

    [Theory]
    [InlineData("{\"prompt\":\"Q\",\"chosen\":\"a\"}", "needs 'chosen' and 'rejected'")]
    [InlineData("{\"prompt\":\"Q\",\"chosen\":\"a\",\"rejected\":\"a\"}", "the same text")]
    [InlineData("{\"prompt\":\"Q\",\"chosen\":\"\",\"rejected\":\"b\"}", "'chosen' is empty")]
    [InlineData("{\"chosen\":\"a\",\"rejected\":\"b\"}", "'prompt' must be a string")]
    [InlineData("{\"prompt\":\"Q\",\"chosen\":\"a\",\"rejected\":[]}", "both be texts or both be lists")]
    [InlineData("{\"chosen\":[{\"role\":\"assistant\",\"content\":\"a\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"b\"}]}", "share no prompt")]
    [InlineData("{\"prompt\":[{\"role\":\"user\",\"content\":\"q\"}],\"chosen\":[{\"role\":\"user\",\"content\":\"a\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"b\"}]}", "'chosen' must end with an assistant message")]
    [InlineData("{\"prompt\":[{\"role\":\"boss\",\"content\":\"q\"}],\"chosen\":[{\"role\":\"assistant\",\"content\":\"a\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"b\"}]}", "role 'boss'")]
    [InlineData("not json", "invalid JSON")]
    public void A_bad_row_names_its_file_and_line(string row, string reason)
    {
        using var temp = new TestModels.TempFolder();
        string path = Write(temp, "pairs.jsonl", "{\"prompt\":\"Q\",\"chosen\":\"a\",\"rejected\":\"b\"}", row);
        var error = Assert.Throws<DataFormatException>(() => PreferenceData.Read(path));
        Assert.StartsWith($"{path}:2:", error.Message);
        Assert.Contains(reason, error.Message);

        // With --skip-bad-rows the row is skipped and listed, never lost silently.
        var read = PreferenceData.Read(path, skipBadRows: true);
        Assert.Single(read.Examples);
        Assert.Contains(reason, Assert.Single(read.SkippedRows));
    }
}
