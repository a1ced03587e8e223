using SharpTune.ModelFolders;
using SharpTune.Models.Decoders;
using SharpTune.Tests.Cli;
using static SharpTune.Tests.ModelFolders.DecoderExports.ExportTestModels;

namespace SharpTune.Tests.Oracle;

/// <summary><c>sharptune export</c> on decoder language models: a GGUF file to a Hugging Face folder and back, checked by llama.cpp.</summary>
[Collection(nameof(ConsoleCollection))]
public class DecoderExportCliTests
{
    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Export_converts_a_gguf_to_a_folder_and_back_to_the_same_logits_in_llama_cpp()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "llama");
        var (code, output, error) = CliHarness.Run("export", "--model", basePath, "--format", "hf", "--out", temp.File("hf"));
        Assert.True(code == 0, error + output);
        Assert.Contains("tokenizer.json", output);
        (code, output, error) = CliHarness.Run("export", "--model", temp.File("hf"), "--format", "gguf", "--dtype", "f32", "--out", temp.File("back.gguf"));
        Assert.True(code == 0, error + output);

        float[][] original, back;
        using (var reference = new LlamaCpp(basePath)) original = reference.Logits(Tokens);
        using (var reference = new LlamaCpp(temp.File("back.gguf")))
        using (var folder = LanguageModel.Load(temp.File("hf")))
        {
            back = reference.Logits(Tokens);
            Assert.Equal(reference.Tokenize("hello world", addBos: true, special: false), folder.Tokenizer.Encode("hello world"));
        }
        for (int t = 0; t < Tokens.Length; t++) Tolerances.AssertClose(original[t], back[t], Tolerances.Exact, $"position {t}"); // the same F32 weights
    }

    [Fact]
    public void Export_refuses_bad_requests_in_one_line()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "qwen2");
        foreach (var (args, message) in new (string[], string)[]
        {
            (["--format", "gguf-lora", "--out", temp.File("lora")], "no LoRA layers"),
            (["--format", "gguf", "--dtype", "q4", "--out", temp.File("m.gguf")], "--dtype 'q4'"),
            (["--format", "gguf", "--out", Directory.CreateDirectory(temp.File("dir.gguf")).FullName], "is a directory"),
            (["--format", "hf", "--out", temp.File("m.gguf")], "ends in .gguf"),
            (["--format", "tflite", "--out", temp.File("x")], "--format 'tflite' is not one of hf, gguf, gguf-lora, onnx"),
            (["--format", "onnx", "--out", temp.File("x.onnx")], "--format onnx exports encoders"),
            (["--format", "hf", "--dtype", "f16", "--out", temp.File("x")], "--dtype applies to GGUF exports only"),
        })
        {
            var (code, output, error) = CliHarness.Run(["export", "--model", basePath, .. args]);
            Assert.True(code == 1, $"{string.Join(' ', args)}: exit {code}\n{error}{output}");
            Assert.Contains(message, error);
            Assert.DoesNotContain("   at ", error);
        }
        var (taskCode, _, taskError) = CliHarness.Run("export", "--model", temp.File("no-such-run"), "--format", "gguf", "--out", temp.File("m.gguf"));
        Assert.Equal(1, taskCode);
        Assert.Contains("is for decoder language models", taskError);
    }

    /// <summary>
    /// End to end: a LoRA run trained by the CLI on a GGUF base, exported as a llama.cpp adapter (with its Modelfile), as a
    /// merged GGUF and as a merged Hugging Face folder; llama.cpp and SharpTune give the run's logits from each.
    /// </summary>
    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void A_lora_run_exports_for_llama_cpp_and_ollama_with_the_runs_logits()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "qwen2"), data = temp.File("train.jsonl"), run = temp.File("run");
        File.WriteAllLines(data, Enumerable.Range(0, 16).Select(i => $$"""{"text": "the river {{i}} runs to the sea"}"""));
        var (code, output, error) = CliHarness.Run("train", "--model", basePath, "--task", "causal-lm", "--train", data, "--method", "lora",
            "--lora-targets", "q_proj,v_proj,down_proj", "--max-steps", "3", "--batch-size", "4", "--lr", "3e-2", "--max-length", "32", "--out", run);
        Assert.True(code == 0, error + output);
        using var trained = LanguageModelFolder.Load(run);
        using var expected = Logits(trained.Model, Tokens);
        using (var plain = LanguageModel.Load(basePath))
        using (var baseLogits = Logits(plain.Model, Tokens))
            Tolerances.AssertDistinct(expected, baseLogits, "trained against base");

        (code, output, error) = CliHarness.Run("export", "--model", run, "--format", "gguf-lora", "--out", temp.File("ollama"));
        Assert.True(code == 0, error + output);
        Assert.Contains($"FROM {Path.GetFullPath(basePath)}", File.ReadAllLines(temp.File("ollama/adapter.Modelfile")));
        Assert.Contains($"wrote {temp.File("ollama/adapter.gguf")}", output);
        Assert.Contains($"ollama create NAME -f {temp.File("ollama/adapter.Modelfile")}", output);
        Assert.Contains($"--format gguf --dtype q8_0 --out {temp.File("ollama/merged.gguf")}", output); // the way every Ollama version takes
        Assert.Contains($"ollama create NAME -f {temp.File("ollama/merged.Modelfile")}", output);
        Assert.Contains($"llama-cli -m {Path.GetFullPath(basePath)} --lora {temp.File("ollama/adapter.gguf")}", output);
        using (var reference = new LlamaCpp(basePath, adapter: temp.File("ollama/adapter.gguf")))
        {
            var logits = reference.Logits(Tokens);
            for (int t = 0; t < Tokens.Length; t++) Tolerances.AssertClose(logits[t], Row(expected, t), 1e-4, $"base + adapter position {t}");
        }

        (code, output, error) = CliHarness.Run("export", "--model", run, "--format", "gguf", "--dtype", "f32", "--out", temp.File("merged.gguf"));
        Assert.True(code == 0, error + output);
        using (var reference = new LlamaCpp(temp.File("merged.gguf")))
        {
            var logits = reference.Logits(Tokens);
            for (int t = 0; t < Tokens.Length; t++) Tolerances.AssertClose(logits[t], Row(expected, t), 1e-4, $"merged position {t}");
        }

        (code, output, error) = CliHarness.Run("export", "--model", run, "--out", temp.File("merged-hf"));
        Assert.True(code == 0, error + output);
        using var folder = LanguageModel.Load(temp.File("merged-hf"));
        using var fromFolder = Logits(folder.Model, Tokens);
        Tolerances.AssertClose(expected, fromFolder, Tolerances.DifferentKernelsThroughNetwork, "merged Hugging Face folder");
    }
}
