using System.Text.Json.Nodes;
using SharpTune.Tests.Cli;

namespace SharpTune.Tests.Distributed;

/// <summary>
/// Data-parallel training for real: the CLI under <c>mpirun -np 2</c> against the CLI in one process on the same
/// data and global batch (the semantics torchrun and Horovod users expect).
/// </summary>
[Trait("Category", "Mpi")]
public class DataParallelTrainingTests
{
    /// <summary>The tiny model with dropout off, so two ranks and one process compute the same thing.</summary>
    static string ModelWithoutDropout(TestModels.TempFolder temp)
    {
        string folder = CliHarness.TinyModelFolder(temp);
        string configPath = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["hidden_dropout_prob"] = 0.0;
        config["attention_probs_dropout_prob"] = 0.0;
        File.WriteAllText(configPath, config.ToJsonString());
        return folder;
    }

    static string[] TrainArgs(string model, string train, string validation, string run, int batchSize, params string[] more) =>
        ["train", "--model", model, "--train", train, "--validation", validation, "--epochs", "2", "--eval-every", "4",
         "--batch-size", batchSize.ToString(), "--seed", "7", "--log-every", "1", "--lr", "3e-3", "--threads", "1", "--out", run, .. more];

    static List<JsonObject> Lines(string run, string type) => File.ReadLines(Path.Combine(run, "metrics.jsonl"))
        .Select(line => JsonNode.Parse(line)!.AsObject()).Where(o => o["type"]!.GetValue<string>() == type).ToList();

    static IEnumerable<string> Files(string run) => Directory.EnumerateFiles(run, "*", SearchOption.AllDirectories)
        .Select(f => Path.GetRelativePath(run, f)).Order(StringComparer.Ordinal);

    [MpiTheory]
    [InlineData("full")]
    [InlineData("lora")]
    [InlineData("lora-variants")]
    public void Two_ranks_train_as_one_process_with_the_same_global_batch(string method)
    {
        using var temp = new TestModels.TempFolder();
        string model = ModelWithoutDropout(temp);
        // 37 examples in global batches of 8: the last batch of each epoch (5) splits unevenly, 3 and 2.
        string train = CliHarness.ToyCsv(temp, "train.csv", 37, 1), validation = CliHarness.ToyCsv(temp, "validation.csv", 13, 2);
        // The variants: each rank builds its PiSSA start and DoRA magnitude from the same base, LoRA+ in both.
        string[] methodArgs = method == "lora-variants"
            ? ["--method", "lora", "--lora-dropout", "0", "--lora-dora", "--lora-init", "pissa", "--lora-rslora", "--loraplus-lr-ratio", "4"]
            : ["--method", method, "--lora-dropout", "0"];
        string single = temp.File("single"), parallel = temp.File("parallel");

        var (code, output, error) = CliProcess.Run([.. TrainArgs(model, train, validation, single, 8), .. methodArgs]);
        Assert.True(code == 0, error + output);
        var mpi = MpiRun.Run(2, [.. TrainArgs(model, train, validation, parallel, 4), .. methodArgs]);
        Assert.True(mpi.Code == 0, mpi.Error + mpi.Out);
        Assert.Contains("global batch 8", mpi.Out);

        var (one, two) = (Lines(single, "train"), Lines(parallel, "train"));
        Assert.Equal(10, one.Count);
        Assert.Equal(one.Count, two.Count);   // each step logged once: rank 1 writes nothing
        for (int i = 0; i < one.Count; i++)
        {
            Assert.Equal(one[i]["step"]!.GetValue<long>(), two[i]["step"]!.GetValue<long>());
            double expected = one[i]["loss"]!.GetValue<double>(), actual = two[i]["loss"]!.GetValue<double>();
            Assert.True(Math.Abs(expected - actual) <= 1e-5, $"{method} step {i + 1}: loss {actual} under mpirun -np 2, {expected} in one process");
        }
        var (evalOne, evalTwo) = (Lines(single, "eval"), Lines(parallel, "eval"));
        Assert.Equal(evalOne.Count, evalTwo.Count);
        for (int i = 0; i < evalOne.Count; i++)
            Assert.True(Math.Abs(evalOne[i]["eval_loss"]!.GetValue<double>() - evalTwo[i]["eval_loss"]!.GetValue<double>()) <= 1e-5, $"evaluation {i}");
        Assert.Equal(Lines(single, "final")[0]["eval_accuracy"]!.GetValue<double>(), Lines(parallel, "final")[0]["eval_accuracy"]!.GetValue<double>());

        // Only rank 0 wrote: the run folder holds what the single process's holds, plus nothing.
        Assert.Equal(Files(single), Files(parallel));
        var report = Assert.Single(Lines(parallel, "data_parallel"));
        Assert.Equal(2, report["processes"]!.GetValue<int>());
    }

    /// <summary>Both runs logged <paramref name="steps"/> training lines with the same loss, relative to the loss's size, within 1e-5.</summary>
    static void AssertSameTrainingLosses(string single, string parallel, int steps, string what)
    {
        var (one, two) = (Lines(single, "train"), Lines(parallel, "train"));
        Assert.Equal(steps, one.Count);
        Assert.Equal(one.Count, two.Count);
        for (int i = 0; i < one.Count; i++)
        {
            double expected = one[i]["loss"]!.GetValue<double>(), actual = two[i]["loss"]!.GetValue<double>();
            Assert.True(Math.Abs(expected - actual) <= 1e-5 * Math.Max(1, Math.Abs(expected)), $"{what} step {i + 1}: loss {actual} under mpirun -np 2, {expected} in one process");
        }
    }

    [MpiTheory]
    [InlineData("lora", "dpo")]
    [InlineData("full", "dpo")]
    [InlineData("lora", "orpo")]
    public void Preference_tuning_on_two_ranks_equals_one_process(string method, string objective)
    {
        using var temp = new TestModels.TempFolder();
        string model = CausalLmCliTests.TinyGguf(temp), train = temp.File("pairs.jsonl");
        // Completions of different lengths, so each rank's pairs have different token counts.
        File.WriteAllLines(train, Enumerable.Range(0, 20).Select(i => new JsonObject
        {
            ["prompt"] = $"question {i}:", ["chosen"] = $" yes {new string('a', i % 5)}", ["rejected"] = $" no{new string('b', i % 3)}",
        }.ToJsonString()));
        // full fine-tuning precomputes the reference on every rank (rank 0 alone writes it); LoRA switches its adapter off.
        string[] Args(string run, int batchSize) =>
            ["train", "--model", model, "--task", "preference", "--objective", objective, "--train", train, "--method", method,
             "--max-steps", "4", "--eval-every", "2", "--batch-size", batchSize.ToString(), "--seed", "7", "--log-every", "1", "--lr", "3e-3",
             "--threads", "1", "--max-length", "32", "--out", run, .. method == "lora" ? ["--lora-dropout", "0"] : Array.Empty<string>()];
        string single = temp.File("single"), parallel = temp.File("parallel");

        var (code, output, error) = CliProcess.Run(Args(single, 6));
        Assert.True(code == 0, error + output);
        var mpi = MpiRun.Run(2, Args(parallel, 3));
        Assert.True(mpi.Code == 0, mpi.Error + mpi.Out);
        Assert.Contains("global batch 6", mpi.Out);

        AssertSameTrainingLosses(single, parallel, 4, $"{method} {objective}");
        var (evalOne, evalTwo) = (Lines(single, "eval"), Lines(parallel, "eval"));
        Assert.Equal(3, evalOne.Count);   // steps 2 and 4, and the end of the first epoch (18 training pairs, 6 a step)
        Assert.Equal(evalOne.Count, evalTwo.Count);
        for (int i = 0; i < evalOne.Count; i++)
            foreach (string key in new[] { "eval_loss", "eval_reward_accuracy", "eval_logps_chosen", "eval_logps_rejected" })
                Tolerances.AssertClose([evalOne[i][key]!.GetValue<double>()], [evalTwo[i][key]!.GetValue<double>()], Tolerances.DifferentKernels, $"evaluation {i + 1}, {key}");
        Assert.Equal(Files(single), Files(parallel));   // rank 1 wrote nothing
    }

    [MpiTheory]
    [InlineData("lora")]
    [InlineData("full")]
    public void A_language_model_trains_on_two_ranks_as_in_one_process(string method)
    {
        using var temp = new TestModels.TempFolder();
        string model = CausalLmCliTests.TinyGguf(temp), train = CausalLmCliTests.Data(temp);
        // Chat, prompt/completion, Alpaca and raw-text rows of different lengths: each rank's share of a global batch
        // of 8 is weighted by its target tokens, and the validation rows are scored and generated from on both ranks.
        string[] Args(string run, int batchSize) =>
            ["train", "--model", model, "--task", "causal-lm", "--train", train, "--method", method, "--max-steps", "6", "--eval-every", "3",
             "--eval-generate", "2", "--batch-size", batchSize.ToString(), "--seed", "7", "--log-every", "1", "--lr", "3e-3", "--threads", "1",
             "--max-length", "48", "--out", run, .. method == "lora" ? ["--lora-dropout", "0"] : Array.Empty<string>()];
        string single = temp.File("single"), parallel = temp.File("parallel");

        var (code, output, error) = CliProcess.Run(Args(single, 8));
        Assert.True(code == 0, error + output);
        var mpi = MpiRun.Run(2, Args(parallel, 4));
        Assert.True(mpi.Code == 0, mpi.Error + mpi.Out);
        Assert.Contains("global batch 8", mpi.Out);

        AssertSameTrainingLosses(single, parallel, 6, method);
        var (evalOne, evalTwo) = (Lines(single, "eval"), Lines(parallel, "eval"));
        Assert.Equal(2, evalOne.Count);
        Assert.Equal(evalOne.Count, evalTwo.Count);
        for (int i = 0; i < evalOne.Count; i++)
        {
            double lossOne = evalOne[i]["eval_loss"]!.GetValue<double>(), lossTwo = evalTwo[i]["eval_loss"]!.GetValue<double>();
            // As the training losses: relative to the loss (15.9 for this tiny random model, where the two processes'
            // different summation orders left 1.5e-5 with libtorch held to AVX2).
            Assert.True(Math.Abs(lossOne - lossTwo) <= Tolerances.DifferentKernels * Math.Max(1, Math.Abs(lossOne)),
                $"evaluation {i + 1}: eval_loss {lossTwo} under mpirun -np 2, {lossOne} in one process");
            Assert.Equal(evalOne[i]["eval_rouge_l"]!.GetValue<double>(), evalTwo[i]["eval_rouge_l"]!.GetValue<double>(), 6);
        }
        Assert.Equal(File.ReadAllText(Path.Combine(single, "samples.jsonl")), File.ReadAllText(Path.Combine(parallel, "samples.jsonl")));
        Assert.Equal(Files(single), Files(parallel));   // rank 1 wrote nothing
        Assert.Equal(2, Assert.Single(Lines(parallel, "data_parallel"))["processes"]!.GetValue<int>());
    }

    [MpiFact]
    public void A_run_killed_under_mpirun_resumes_to_the_uninterrupted_run_and_refuses_another_number_of_processes()
    {
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp);   // dropout on: seeded per rank and micro-step
        string train = CliHarness.ToyCsv(temp, "train.csv", 40, 1), validation = CliHarness.ToyCsv(temp, "validation.csv", 12, 2);
        string whole = temp.File("whole"), killed = temp.File("killed");

        var run = MpiRun.Run(2, TrainArgs(model, train, validation, whole, 4));
        Assert.True(run.Code == 0, run.Error + run.Out);

        // Rank 0 is killed with SIGKILL right after its step-4 checkpoint; mpirun ends rank 1.
        run = MpiRun.Run(2, TrainArgs(model, train, validation, killed, 4), new Dictionary<string, string> { ["SHARPTUNE_FAULT_KILL_AFTER_CHECKPOINT"] = "4" });
        Assert.True(run.Code != 0, $"the job was not killed\n{run.Error}{run.Out}");
        Assert.False(File.Exists(Path.Combine(killed, "eval_final.json")));

        var (code, output, error) = CliProcess.Run([.. TrainArgs(model, train, validation, killed, 4), "--resume"]);
        Assert.NotEqual(0, code);
        Assert.Contains("can only be resumed by as many", error);

        run = MpiRun.Run(2, [.. TrainArgs(model, train, validation, killed, 4), "--resume"]);
        Assert.True(run.Code == 0, run.Error + run.Out);
        static List<string> Values(string folder) => Lines(folder, "train").Concat(Lines(folder, "eval")).Concat(Lines(folder, "final"))
            .Select(o =>
            {
                foreach (string key in new[] { "time", "examples_per_second", "tokens_per_second" }) o.Remove(key);
                return o.ToJsonString();
            }).ToList();
        Assert.Equal(Values(whole), Values(killed));
        Assert.Equal(File.ReadAllText(Path.Combine(whole, "eval_final.json")), File.ReadAllText(Path.Combine(killed, "eval_final.json")));
    }

    [MpiFact]
    public void A_rank_that_throws_ends_the_job_with_its_message()
    {
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp);
        string train = CliHarness.ToyCsv(temp, "train.csv", 40, 1), validation = CliHarness.ToyCsv(temp, "validation.csv", 12, 2);
        var run = MpiRun.Run(2, TrainArgs(model, train, validation, temp.File("run"), 4),
            new Dictionary<string, string> { ["SHARPTUNE_FAULT_FAIL_RANK"] = "1" }, timeout: TimeSpan.FromMinutes(1));
        Assert.True(run.Code != 0, run.Error + run.Out);
        Assert.Contains("injected failure on rank 1", run.Error);
        Assert.Contains("rank 1 of 2", run.Error);
        Assert.True(run.Elapsed < TimeSpan.FromSeconds(45), $"the job took {run.Elapsed} to end");
    }

    [MpiFact]
    public void Ranks_with_different_options_stop_with_a_clear_message()
    {
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp);
        string train = CliHarness.ToyCsv(temp, "train.csv", 40, 1), validation = CliHarness.ToyCsv(temp, "validation.csv", 12, 2);
        string run = temp.File("run");
        var mpi = MpiRun.Run(2, TrainArgs(model, train, validation, run, 4), secondArgs: TrainArgs(model, train, validation, run, 4, "--weight-decay", "0.02"),
            timeout: TimeSpan.FromMinutes(1));
        Assert.True(mpi.Code != 0, mpi.Error + mpi.Out);
        Assert.Contains("do not run the same configuration: rank 1 differs from rank 0 in its options", mpi.Error);
    }
}
