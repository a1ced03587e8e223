using System.Diagnostics;
using SharpTune.Checkpoints;
using SharpTune.Models.Memory;
using SharpTune.Tests.Models.Memory;

namespace SharpTune.Tests.Cli;

/// <summary>
/// A model or a run too big for the machine is refused before anything is allocated or written, with the numbers and
/// the options that would make it fit, as one error line and exit code 1; no stack trace, no kill by the kernel.
/// Each runs the CLI in its own process, whose available memory and disk are set through the environment.
/// </summary>
public class ResourceCliTests
{
    static (int Code, string Out, string Error, double Seconds) Run(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var clock = Stopwatch.StartNew();
        var (code, output, error) = CliProcess.Run(args, environment);
        return (code, output, error, clock.Elapsed.TotalSeconds);
    }

    static void AssertRefused((int Code, string Out, string Error, double Seconds) result, string expected)
    {
        Assert.True(result.Code == 1, $"exit {result.Code}\n{result.Error}\n{result.Out}");
        Assert.Contains(expected, result.Error);
        Assert.DoesNotContain("   at ", result.Error);          // no stack trace
        Assert.DoesNotContain("internal error", result.Error);
        Assert.True(result.Seconds < 60, $"took {result.Seconds:F0} s: refused after loading?");
    }

    [Fact]
    public void Generate_refuses_a_7B_model_that_needs_more_memory_than_there_is_and_names_stored_and_bf16()
    {
        using var temp = new TestModels.TempFolder();
        string model = BigGguf.Write(temp);
        var env = new Dictionary<string, string> { [AvailableMemory.Variable] = "24G" };
        var result = Run(env, "generate", "--model", model, "--dtype", "fp32", "--prompt", "hello", "--max-new-tokens", "4");
        AssertRefused(result, "error: not enough memory for generate with");
        Assert.Contains("--dtype stored (the file's blocks as they are, memory-mapped: about 4.", result.Error);
        Assert.Contains("--dtype bf16 (the weights in half the memory: about 14", result.Error);
        Assert.Contains("25.8 GB available (set by SHARPTUNE_AVAILABLE_MEMORY)", result.Error);
        Assert.Equal("", result.Out);

        // bf16 does not fit in 8 GB either: said, and refused the same way; nor the stored blocks (4.3 GB) in 3 GB.
        var smaller = Run(new Dictionary<string, string> { [AvailableMemory.Variable] = "8G" }, "chat", "--model", model, "--dtype", "bf16");
        AssertRefused(smaller, "error: not enough memory for chat with");
        var stored = Run(new Dictionary<string, string> { [AvailableMemory.Variable] = "3G" }, "generate", "--model", model, "--prompt", "hello");
        AssertRefused(stored, "error: not enough memory for generate with");
        Assert.Contains("(stored)", stored.Error);
    }

    [Fact]
    public void Info_prints_the_estimates_of_a_model_too_big_for_fp32_and_describes_it_from_its_mapped_blocks()
    {
        using var temp = new TestModels.TempFolder();
        string model = BigGguf.Write(temp);
        var result = Run(new Dictionary<string, string> { [AvailableMemory.Variable] = "4G" }, "info", "--model", model);
        Assert.True(result.Code == 0, result.Error + result.Out);
        foreach (string expected in new[] { "memory         inference (512 tokens): about 29.2 GB in fp32 (27.0 GB weights", "LoRA step (r 8, default targets, 4 x 512 tokens)",
                     "with --base-dtype bf16 --gradient-checkpointing", "with --dtype stored (the default for a GGUF: its blocks memory-mapped): about 4.",
                     "parameters     6,738,415,616" })
            Assert.True(result.Out.Contains(expected), $"'{expected}' not in:\n{result.Out}");
    }

    [Fact]
    public void Training_a_7B_model_in_full_is_refused_naming_lora_checkpointing_and_smaller_batches()
    {
        using var temp = new TestModels.TempFolder();
        string model = BigGguf.Write(temp), data = CausalLmCliTests.Data(temp), run = temp.File("run");
        var env = new Dictionary<string, string> { [AvailableMemory.Variable] = "24G" };
        var result = Run(env, "train", "--model", model, "--task", "causal-lm", "--train", data, "--method", "full",
            "--batch-size", "4", "--max-length", "512", "--out", run);
        AssertRefused(result, "error: not enough memory for training");
        foreach (string option in new[] { "--gradient-checkpointing", "--batch-size 2", "--max-length 256", "--method lora --base-dtype bf16" })
            Assert.Contains(option, result.Error);
        Assert.False(Directory.Exists(Path.Combine(run, "checkpoints")));
    }

    [Fact]
    public void Eval_and_predict_refuse_a_task_model_that_would_not_fit()
    {
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp), data = CliHarness.ToyCsv(temp, "test.csv", 4, 1);
        var env = new Dictionary<string, string> { [AvailableMemory.Variable] = "1M" };
        AssertRefused(Run(env, "eval", "--model", model, "--data", data), "error: not enough memory for eval with");
        AssertRefused(Run(env, "predict", "--model", model, "--data", data), "error: not enough memory for predict with");
    }

    [Fact]
    public void A_run_folder_without_room_for_a_checkpoint_is_refused_at_the_start()
    {
        using var temp = new TestModels.TempFolder();
        string model = CliHarness.TinyModelFolder(temp), data = CliHarness.ToyCsv(temp, "train.csv", 40, 1), run = temp.File("run");
        var env = new Dictionary<string, string> { [DiskSpace.Variable] = "100K" };
        var result = Run(env, "train", "--model", model, "--train", data, "--epochs", "1", "--out", run);
        AssertRefused(result, "error: not enough disk space for the run folder");
        Assert.Contains("a checkpoint of", result.Error);
        Assert.Contains("102 kB free on the file system of", result.Error);
        Assert.False(Directory.Exists(Path.Combine(run, "checkpoints")));
    }
}
