using System.Text.Json.Nodes;
using SharpTune.Tests.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Cli;

/// <summary>
/// Preference tuning as a user runs it: pairs that prefer one answer, DPO and ORPO with the methods users pick, the
/// run folder generating afterwards, and the refusals a bad command line gets before anything loads.
/// </summary>
public class PreferenceCliTests
{
    /// <summary>
    /// Prompts "qN:" whose chosen answer is "yes" and rejected "no": a preference any model can learn. The tiny GGUF spells
    /// both in byte tokens; without a space prefix they differ from their first token, where DPO's gradient lives (a
    /// prefix both answers share gets none).
    /// </summary>
    static string Pairs(TestModels.TempFolder temp, string name, IEnumerable<int> numbers)
    {
        string path = temp.File(name);
        File.WriteAllLines(path, numbers.Select(i => new JsonObject { ["prompt"] = $"q{i}:", ["chosen"] = Chosen, ["rejected"] = "no" }.ToJsonString()));
        return path;
    }

    static JsonNode FinalMetrics(string run) =>
        File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Last(n => n["type"]?.GetValue<string>() == "final");

    static List<string> Says(string model, IEnumerable<int> numbers)
    {
        var (code, output, error) = CliHarness.Run(["generate", "--model", model, "--greedy", "--max-new-tokens", "4", "--json", "--quiet",
            .. numbers.SelectMany(i => new[] { "--prompt", $"q{i}:" })]);
        Assert.True(code == 0, error);
        return [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!["text"]!.GetValue<string>())];
    }

    const string Chosen = "yes";

    /// <summary>
    /// The tiny GGUF with no space prefix and its matrices scaled to a tenth: the unit-variance test weights make a model so sure of its
    /// random next token that a few steps move nothing, while these start near uniform, as a pretrained model's
    /// answers to a new question do.
    /// </summary>
    static string GentleGguf(TestModels.TempFolder temp)
    {
        var sizes = new TinyDecoderSizes(300, 32, 2, 4, 2, 37, 96);
        var weights = GgufTestModels.HfLlama(sizes, bias: false, tied: false);
        foreach (var (name, tensor) in weights.ToList())
            if (tensor.dim() == 2) weights[name] = tensor * 0.1f;
        string path = temp.File("gentle.gguf");
        GgufTestModels.WriteLlama(path, "llama", sizes, weights, edit: w => w.Set("tokenizer.ggml.add_space_prefix", false));
        return path;
    }

    static bool SaysChosen(string text) => text.StartsWith(Chosen, StringComparison.Ordinal);

    [Theory]
    [InlineData("dpo")]
    [InlineData("orpo")]
    public void A_learnt_preference_holds_on_held_out_prompts_and_changes_what_the_model_says(string objective)
    {
        using var temp = new TestModels.TempFolder();
        string model = GentleGguf(temp), run = temp.File("run");
        string train = Pairs(temp, "train.jsonl", Enumerable.Range(0, 48)), validation = Pairs(temp, "dev.jsonl", Enumerable.Range(200, 20));
        var (code, output, error) = CliHarness.Run("train", "--model", model, "--task", "preference", "--objective", objective,
            "--train", train, "--validation", validation, "--method", "lora", "--lora-targets", "all-linear", "--lr", "2e-2",
            "--max-steps", "40", "--batch-size", "8", "--beta", "0.1", "--orpo-lambda", "0.5", "--out", run, "--max-length", "24", "--eval-every", "20");
        Assert.True(code == 0, error + output);
        Assert.Contains("reward accuracy", output);
        if (objective == "dpo") Assert.Contains("reference: the base with the adapter switched off", output);
        var final = FinalMetrics(run);
        Assert.True(final["eval_reward_accuracy"]!.GetValue<double>() >= 0.95, final.ToJsonString());
        Assert.True(final["eval_reward_margin"]!.GetValue<double>() > 0, final.ToJsonString());
        Assert.True(File.Exists(Path.Combine(run, "curves.png")));

        // Greedy generation moves toward the preferred answer on prompts never trained on.
        var held = Enumerable.Range(300, 8).ToList();
        List<string> before = Says(model, held), after = Says(run, held);
        int chosenBefore = before.Count(SaysChosen), chosenAfter = after.Count(SaysChosen);
        Assert.True(chosenAfter > chosenBefore && chosenAfter >= 6,
            $"held-out prompts answered the chosen piece: {chosenBefore} before ({string.Join(" | ", before)}), {chosenAfter} after ({string.Join(" | ", after)})\n{final.ToJsonString()}");

        // eval --compare: both models on the held-out pairs, side by side, and DPO's implicit reward against the base.
        string report = temp.File("compare.json");
        var compared = CliHarness.Run("eval", "--model", run, "--compare", model, "--data", validation, "--output", report);
        Assert.True(compared.Code == 0, compared.Error + compared.Out);
        Assert.Contains("preference_accuracy", compared.Out);
        Assert.Contains("difference", compared.Out);
        var json = JsonNode.Parse(File.ReadAllText(report))!;
        Assert.Equal(20, json["pairs"]!.GetValue<int>());
        double ours = json["metrics"]!["preference_accuracy"]!.GetValue<double>(), theirs = json["compared_metrics"]!["preference_accuracy"]!.GetValue<double>();
        Assert.True(ours >= 0.95, json.ToJsonString());
        Assert.Equal(ours - theirs, json["difference"]!["preference_accuracy"]!.GetValue<double>(), 12);
        Assert.True(json["rewards_against_compared"]!["reward_accuracy"]!.GetValue<double>() >= 0.95, json.ToJsonString());

        // The same preference as a multiple-choice question (lm-evaluation-harness's form): the tuned model picks "yes".
        string questions = temp.File("choices.jsonl");
        File.WriteAllLines(questions, held.Select(i => new JsonObject { ["context"] = $"q{i}:", ["choices"] = new JsonArray("no", "yes"), ["answer"] = "yes" }.ToJsonString()));
        var choices = CliHarness.Run("eval", "--model", run, "--compare", model, "--data", questions, "--output", report);
        Assert.True(choices.Code == 0, choices.Error + choices.Out);
        json = JsonNode.Parse(File.ReadAllText(report))!;
        Assert.Equal(8, json["questions"]!.GetValue<int>());
        Assert.NotNull(json["compared_metrics"]!["accuracy_per_character"]);
        Assert.True(json["metrics"]!["accuracy"]!.GetValue<double>() >= json["compared_metrics"]!["accuracy"]!.GetValue<double>(), json.ToJsonString());
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

    /// <summary>The metrics a run logged, without the timings, which differ between any two runs.</summary>
    static List<JsonObject> Logged(string run) => [.. File.ReadLines(Path.Combine(run, "metrics.jsonl"))
        .Select(line => JsonNode.Parse(line)!.AsObject())
        .Where(o => o["type"]!.GetValue<string>() is "train" or "eval" or "final")
        .Select(o =>
        {
            foreach (string key in new[] { "time", "examples_per_second", "tokens_per_second", "elapsed_seconds", "seconds" }) o.Remove(key);
            return o;
        })];

    /// <summary>
    /// Two logs line by line: the same lines and keys, the same numbers up to the rounding a matrix product's thread split
    /// may change between two processes (the runs compared are separate processes on a busy machine).
    /// </summary>
    static void AssertSameLog(List<JsonObject> expected, List<JsonObject> actual)
    {
        Assert.Equal(expected.Select(o => string.Join(",", o.Select(kv => kv.Key))), actual.Select(o => string.Join(",", o.Select(kv => kv.Key))));
        for (int line = 0; line < expected.Count; line++)
            foreach (var (key, value) in expected[line])
            {
                var other = actual[line][key];
                if (value is JsonValue v && v.TryGetValue(out double number))
                    Tolerances.AssertClose([number], [other!.GetValue<double>()], Tolerances.DifferentKernels, $"line {line + 1}, {key}");
                else
                    Assert.Equal(value?.ToJsonString(), other?.ToJsonString());
            }
    }

    [Fact]
    public void A_precomputed_reference_is_kept_so_a_killed_run_resumes_exactly()
    {
        using var temp = new TestModels.TempFolder();
        string model = CausalLmCliTests.TinyGguf(temp), whole = temp.File("whole"), killed = temp.File("killed");
        string train = Pairs(temp, "train.jsonl", Enumerable.Range(0, 12));
        string[] Command(string run) => ["train", "--model", model, "--task", "preference", "--train", train, "--method", "lora",
            "--precompute-reference", "--batch-size", "4", "--out", run, "--max-length", "24", "--max-steps", "4", "--eval-every", "2"];

        var first = CliProcess.Run(Command(whole));
        Assert.True(first.Code == 0, first.Error + first.Out);
        Assert.Contains("computed once", first.Out);

        // kill -9 right after the step-2 checkpoint, then resume: the reference is read back, not recomputed.
        var cut = CliProcess.Run(Command(killed), new Dictionary<string, string> { ["SHARPTUNE_FAULT_KILL_AFTER_CHECKPOINT"] = "2" });
        Assert.True(cut.Code != 0, $"the run was not killed\n{cut.Error}{cut.Out}");
        string referenceFile = Path.Combine(killed, "reference_logps.json"), stored = File.ReadAllText(referenceFile);

        // A damaged reference file is named, not trusted and not silently recomputed.
        File.WriteAllText(referenceFile, "{\"fingerprint\": \"" + JsonNode.Parse(stored)!["fingerprint"] + "\", \"train\": [[1, \"x\"]]}");
        var damaged = CliProcess.Run([.. Command(killed), "--resume"]);
        Assert.NotEqual(0, damaged.Code);
        Assert.Contains("reference_logps.json: not a reference file SharpTune wrote ('train' row 1 is not two numbers)", damaged.Error);
        Assert.DoesNotContain("   at ", damaged.Error);
        File.WriteAllText(referenceFile, stored);

        var resumed = CliProcess.Run([.. Command(killed), "--resume"]);
        Assert.True(resumed.Code == 0, resumed.Error + resumed.Out);
        Assert.Contains("reference: read from", resumed.Out);
        Assert.Equal(stored, File.ReadAllText(referenceFile));
        AssertSameLog(Logged(whole), Logged(killed));
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
