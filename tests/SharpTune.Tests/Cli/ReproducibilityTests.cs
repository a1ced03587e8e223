using System.Text.Json.Nodes;

namespace SharpTune.Tests.Cli;

/// <summary>
/// A run is a function of its options, across processes: what one process drew before (the tests before this one
/// seed torch's generator too) must not change it. So these start the CLI in processes of their own.
/// </summary>
public class ReproducibilityTests
{
    /// <summary>metrics.jsonl without what depends on the clock.</summary>
    static List<string> Values(string run) => File.ReadLines(Path.Combine(run, "metrics.jsonl"))
        .Select(line => JsonNode.Parse(line)!.AsObject())
        .Where(o => o["type"]!.GetValue<string>() is "train" or "eval" or "final")
        .Select(o =>
        {
            foreach (string key in new[] { "time", "examples_per_second", "tokens_per_second", "elapsed_seconds", "seconds" }) o.Remove(key);
            return o.ToJsonString();
        })
        .ToList();

    static string[] TrainArgs(string model, string train, string validation, string run, int steps) =>
        ["train", "--model", model, "--train", train, "--validation", validation, "--max-steps", steps.ToString(), "--eval-every", "5",
         "--batch-size", "4", "--seed", "7", "--log-every", "1", "--lr", "3e-3", "--out", run];

    [Fact]
    public void The_same_command_and_seed_give_the_same_run_in_two_processes()
    {
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp);
        string train = CliHarness.ToyCsv(temp, "train.csv", 40, 1), validation = CliHarness.ToyCsv(temp, "validation.csv", 12, 2);
        // The method with the most random initialisation: a prompt encoder, a head, dropout.
        foreach (string method in new[] { "full", "ptuning" })
        {
            var runs = new[] { temp.File($"{method}-a"), temp.File($"{method}-b") };
            foreach (string run in runs)
            {
                var (code, output, error) = CliProcess.Run([.. TrainArgs(model, train, validation, run, 10), "--method", method]);
                Assert.True(code == 0, error + output);
            }
            var (first, second) = (Values(runs[0]), Values(runs[1]));
            Assert.True(first.Count >= 12, $"{method}: only {first.Count} lines logged");
            Assert.Equal(first, second);
        }
    }

    [Fact]
    public void A_language_model_run_is_the_same_in_two_processes()
    {
        using var temp = new TestModels.TempFolder();
        string model = CausalLmCliTests.TinyGguf(temp), train = CausalLmCliTests.Data(temp);
        // LoRA with dropout, made in bf16 with the base and given back fp32, and generated samples at each evaluation.
        var runs = new[] { temp.File("a"), temp.File("b") };
        foreach (string run in runs)
        {
            var (code, output, error) = CliProcess.Run(["train", "--model", model, "--task", "causal-lm", "--train", train, "--method", "lora",
                "--lora-dropout", "0.1", "--base-dtype", "bf16", "--max-steps", "6", "--eval-every", "3", "--eval-generate", "2",
                "--batch-size", "4", "--seed", "7", "--log-every", "1", "--lr", "3e-3", "--max-length", "40", "--out", run]);
            Assert.True(code == 0, error + output);
        }
        var (first, second) = (Values(runs[0]), Values(runs[1]));
        Assert.True(first.Count >= 9, $"only {first.Count} lines logged");
        Assert.Equal(first, second);
        Assert.Equal(File.ReadAllText(Path.Combine(runs[0], "samples.jsonl")), File.ReadAllText(Path.Combine(runs[1], "samples.jsonl")));
    }

    [Fact]
    public void A_run_killed_after_a_checkpoint_and_resumed_ends_as_the_uninterrupted_run()
    {
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp);
        string train = CliHarness.ToyCsv(temp, "train.csv", 40, 1), validation = CliHarness.ToyCsv(temp, "validation.csv", 12, 2);
        string whole = temp.File("whole"), killed = temp.File("killed");

        var (code, output, error) = CliProcess.Run(TrainArgs(model, train, validation, whole, 20));
        Assert.True(code == 0, error + output);

        // kill -9 right after the step-10 checkpoint: no handler, no flush, no cleanup runs.
        (code, output, error) = CliProcess.Run(TrainArgs(model, train, validation, killed, 20),
            new Dictionary<string, string> { ["SHARPTUNE_FAULT_KILL_AFTER_CHECKPOINT"] = "10" });
        Assert.True(code == 137 || code < 0 || code == -9, $"the run was not killed: exit {code}\n{error}{output}");
        Assert.False(File.Exists(Path.Combine(killed, "eval_final.json")));

        (code, output, error) = CliProcess.Run([.. TrainArgs(model, train, validation, killed, 20), "--resume"]);
        Assert.True(code == 0, error + output);

        // The resumed log repeats nothing and misses nothing: its lines after the kill equal the whole run's.
        var expected = Values(whole);
        var resumed = Values(killed);
        Assert.Equal(expected, resumed);
        Assert.Equal(File.ReadAllText(Path.Combine(whole, "eval_final.json")), File.ReadAllText(Path.Combine(killed, "eval_final.json")));
    }
}
