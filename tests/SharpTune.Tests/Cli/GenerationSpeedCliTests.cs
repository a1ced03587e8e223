using System.Text.RegularExpressions;

namespace SharpTune.Tests.Cli;

/// <summary>generate and chat print what llama.cpp prints (load time, prompt and generation tokens/s) to stderr only.</summary>
public class GenerationSpeedCliTests
{
    static readonly Regex Speed = new(@"load \d+\.\d\d s; prompt (\d+) tokens, \d+\.\d tokens/s; generated (\d+) tokens, \d+\.\d tokens/s");

    [Fact]
    public void Generate_prints_load_time_and_tokens_per_second_to_stderr_and_leaves_stdout_alone()
    {
        using var temp = new TestModels.TempFolder();
        string model = CausalLmCliTests.TinyGguf(temp);
        string[] args = ["generate", "--model", model, "--prompt", "the river", "--prompt", "count 3:", "--max-new-tokens", "5", "--greedy", "--json"];
        var loud = CliHarness.Run(args);
        var quiet = CliHarness.Run([.. args, "--quiet"]);
        Assert.True(loud.Code == 0 && quiet.Code == 0, loud.Error + quiet.Error);
        Assert.Equal(quiet.Out, loud.Out);                      // the JSON lines are the same with or without the figures
        Assert.DoesNotContain("tokens/s", loud.Out);
        Assert.Equal("", quiet.Error);
        var match = Speed.Match(loud.Error);
        Assert.True(match.Success, loud.Error);
        int generated = loud.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Sum(line => System.Text.Json.Nodes.JsonNode.Parse(line)!["token_ids"]!.AsArray().Count);
        Assert.True(int.Parse(match.Groups[2].Value) >= generated, $"{match.Value}; {generated} tokens in the output");
        Assert.True(int.Parse(match.Groups[1].Value) >= 4, match.Value);   // both prompts' tokens, BOS included
    }

    [Fact]
    public void Chat_prints_the_figures_after_each_reply()
    {
        using var temp = new TestModels.TempFolder();
        string model = CausalLmCliTests.TinyGguf(temp);
        var oldIn = Console.In;
        Console.SetIn(new StringReader("hi\nhow are you\n/exit\n"));
        try
        {
            var result = CliHarness.Run("chat", "--model", model, "--max-new-tokens", "3", "--greedy");
            Assert.True(result.Code == 0, result.Error);
            Assert.DoesNotContain("tokens/s", result.Out);
            var lines = result.Error.Split('\n').Where(l => l.Contains("tokens/s")).ToList();
            Assert.Equal(2, lines.Count);
            Assert.Matches(Speed, lines[0]);                   // the load time goes with the first reply
            Assert.DoesNotContain("load", lines[1]);
        }
        finally
        {
            Console.SetIn(oldIn);
        }
    }
}
