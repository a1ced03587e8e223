using System.Text.Json.Nodes;

namespace SharpTune.Tests.Cli;

/// <summary>
/// Preference tuning as a user runs it: pairs that prefer one answer, DPO and ORPO with the methods users pick, the
/// run folder generating afterwards, and the refusals a bad command line gets before anything loads.
/// </summary>
public class PreferenceCliTests
{
    /// <summary>Prompts "qN:" whose chosen answer is " yes" and rejected " no": a preference any model can learn.</summary>
    static string Pairs(TestModels.TempFolder temp, string name, IEnumerable<int> numbers)
    {
        string path = temp.File(name);
        File.WriteAllLines(path, numbers.Select(i => new JsonObject { ["prompt"] = $"q{i}:", ["chosen"] = " yes", ["rejected"] = " no" }.ToJsonString()));
        return path;
    }

    static JsonNode FinalMetrics(string run) =>
        File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Last(n => n["type"]?.GetValue<string>() == "final");

    static int SaysYes(string model, IEnumerable<int> numbers)
    {
        var (code, output, error) = CliHarness.Run(["generate", "--model", model, "--greedy", "--max-new-tokens", "4", "--json", "--quiet",
            .. numbers.SelectMany(i => new[] { "--prompt", $"q{i}:" })]);
        Assert.True(code == 0, error);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Count(l => JsonNode.Parse(l)!["text"]!.GetValue<string>().StartsWith(" yes", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("dpo")]
    [InlineData("orpo")]
    public void A_learnt_preference_holds_on_held_out_prompts_and_changes_what_the_model_says(string objective)
    {
        using var temp = new TestModels.TempFolder();
        string model = CausalLmCliTests.TinyGguf(temp), run = temp.File("run");
        string train = Pairs(temp, "train.jsonl", Enumerable.Range(0, 48)), validation = Pairs(temp, "dev.jsonl", Enumerable.Range(200, 20));
        var (code, output, error) = CliHarness.Run("train", "--model", model, "--task", "preference", "--objective", objective,
            "--train", train, "--validation", validation, "--method", "lora", "--lora-targets", "all-linear", "--lr", "2e-2",
            "--max-steps", "40", "--batch-size", "8", "--beta", "0.5", "--orpo-lambda", "0.5", "--out", run, "--max-length", "24", "--eval-every", "20");
        Assert.True(code == 0, error + output);
        Assert.Contains("reward accuracy", output);
        if (objective == "dpo") Assert.Contains("reference: the base with the adapter switched off", output);
        var final = FinalMetrics(run);
        Assert.True(final["eval_reward_accuracy"]!.GetValue<double>() >= 0.95, final.ToJsonString());
        Assert.True(final["eval_reward_margin"]!.GetValue<double>() > 0, final.ToJsonString());
        Assert.True(File.Exists(Path.Combine(run, "curves.png")));

        // Greedy generation moves toward the preferred answer on prompts never trained on.
        var held = Enumerable.Range(300, 8).ToList();
        int before = SaysYes(model, held), after = SaysYes(run, held);
        Assert.True(after > before && after >= 6, $"held-out prompts answered ' yes': {before} before, {after} after");
    }

    [Theory]
    [InlineData("full")]
    [InlineData("ia3")]
    [InlineData("prompt")]
    [InlineData("ptuning")]
    [InlineData("prefix")]
    [InlineData("ptuning-v2")]
    public void Every_method_trains_with_the_reference_its_method_allows(string method)
    {
        using var temp = new TestModels.TempFolder();
        string model = CausalLmCliTests.TinyGguf(temp), run = temp.File("run");
        string train = Pairs(temp, "train.jsonl", Enumerable.Range(0, 12));
        var (code, output, error) = CliHarness.Run("train", "--model", model, "--task", "preference", "--train", train, "--method", method,
            "--max-steps", "2", "--batch-size", "4", "--virtual-tokens", "3", "--out", run, "--max-length", "24");
        Assert.True(code == 0, error + output);
        bool precomputed = File.Exists(Path.Combine(run, "reference_logps.json"));
        Assert.Equal(method == "full", precomputed);   // a method that trains the base cannot switch itself off
        Assert.True(File.Exists(Path.Combine(run, "final", "sharptune_lm.json")));

        var generated = CliHarness.Run("generate", "--model", run, "--prompt", "q1:", "--max-new-tokens", "2", "--greedy", "--quiet");
        Assert.True(generated.Code == 0, generated.Error);
    }

    [Fact]
    public void A_precomputed_reference_is_kept_and_read_back_when_the_run_resumes()
    {
        using var temp = new TestModels.TempFolder();
        string model = CausalLmCliTests.TinyGguf(temp), run = temp.File("run");
        string train = Pairs(temp, "train.jsonl", Enumerable.Range(0, 12));
        string[] command = ["train", "--model", model, "--task", "preference", "--train", train, "--method", "lora", "--precompute-reference",
            "--batch-size", "4", "--out", run, "--max-length", "24", "--eval-every", "2"];
        var first = CliHarness.Run([.. command, "--max-steps", "2"]);
        Assert.True(first.Code == 0, first.Error + first.Out);
        Assert.Contains("computed once", first.Out);
        string stored = File.ReadAllText(Path.Combine(run, "reference_logps.json"));
        var resumed = CliHarness.Run([.. command, "--max-steps", "4", "--resume"]);
        Assert.True(resumed.Code == 0, resumed.Error + resumed.Out);
        Assert.Contains("reference: read from", resumed.Out);
        Assert.Equal(stored, File.ReadAllText(Path.Combine(run, "reference_logps.json")));
    }

    [Theory]
    [InlineData("--packing", null, "--packing applies to --task causal-lm")]
    [InlineData("--objective", "kto", "--objective 'kto' is not known")]
    [InlineData("--beta", "0", "--beta must be a positive number")]
    [InlineData("--train-on-prompt", null, "--train-on-prompt applies to --task causal-lm")]
    public void A_bad_option_is_refused_before_the_model_loads(string flag, string? value, string message)
    {
        using var temp = new TestModels.TempFolder();
        string train = Pairs(temp, "train.jsonl", Enumerable.Range(0, 4));
        string[] args = ["train", "--model", temp.File("missing.gguf"), "--task", "preference", "--train", train, flag];
        var (code, _, error) = CliHarness.Run(value is null ? args : [.. args, value]);
        Assert.NotEqual(0, code);
        Assert.Contains(message, error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void Orpo_takes_no_reference_and_says_so_when_asked_for_one()
    {
        using var temp = new TestModels.TempFolder();
        string train = Pairs(temp, "train.jsonl", Enumerable.Range(0, 4));
        var (code, _, error) = CliHarness.Run("train", "--model", temp.File("missing.gguf"), "--task", "preference", "--objective", "orpo",
            "--precompute-reference", "--train", train);
        Assert.NotEqual(0, code);
        Assert.Contains("--precompute-reference applies to --objective dpo", error);
    }
}
