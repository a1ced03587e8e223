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
            (["--format", "gguf", "--out", temp.Path], "is a directory"),
            (["--format", "onnx", "--out", temp.File("x")], "--format 'onnx'"),
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
}
