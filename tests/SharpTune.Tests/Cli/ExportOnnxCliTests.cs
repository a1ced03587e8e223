using Microsoft.ML.OnnxRuntime;
using SharpTune.Heads;
using SharpTune.ModelFolders;
using SharpTune.Tests.ModelFolders;
using SharpTune.Tokenization;
using static SharpTune.Tests.Cli.CliHarness;
using static TorchSharp.torch;

namespace SharpTune.Tests.Cli;

/// <summary><c>sharptune export --format onnx</c>: what it writes and says, and what it refuses.</summary>
public class ExportOnnxCliTests
{
    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void A_lora_run_exports_merged_and_onnx_runtime_scores_as_the_run_does()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        string train = ToyCsv(temp, "train.csv", 24, 4);
        string run = temp.File("run");
        var (code, output, error) = Run("train", "--model", model, "--train", train, "--method", "lora", "--epochs", "1", "--batch-size", "8",
            "--max-length", "16", "--out", run);
        Assert.True(code == 0, error + output);

        (code, output, error) = Run("export", "--model", run, "--format", "onnx", "--out", temp.File("onnx"));
        Assert.True(code == 0, error + output);
        foreach (string file in new[] { "model.onnx", "vocab.txt", "tokenizer_config.json", "config.json" })
            Assert.Contains($"wrote {temp.File("onnx/" + file)}", output);
        Assert.Contains("output: logits (batch, 2): class scores", output);
        Assert.Contains("note: the lora adapter is merged into the exported weights", output);
        Assert.Contains("inputs: input_ids, attention_mask, token_type_ids (int64, batch x sequence; both axes dynamic)", output);

        // The folder's own vocabulary tokenizes; ONNX Runtime's logits equal the run's (base + adapter, unmerged).
        var tokenizer = BertTextTokenizer.FromVocabStream(File.OpenRead(temp.File("onnx/vocab.txt")), lowerCase: true, "vocab.txt");
        string[] texts = ["the movie was great, fine", "the food is awful", "bad"];
        using var batch = TokenBatch.Collate(texts.Select(t => tokenizer.Encode(t, maxLength: 16)).ToArray(), tokenizer.PadId);
        using var loaded = TaskModelFolder.Load(run);
        using var _ = no_grad();
        using var expected = loaded.Model.forward(new ModelInputs(batch.InputIds, batch.AttentionMask, batch.TokenTypeIds));
        using var session = new InferenceSession(temp.File("onnx/model.onnx"));
        var outputs = OnnxRuntimeRun.Run(session, batch.InputIds, batch.AttentionMask, batch.TokenTypeIds);
        Tolerances.AssertClose(expected, outputs["logits"], Tolerances.DifferentKernelsThroughNetwork, "exported run");
    }

    [Fact]
    public void An_encoder_exports_to_a_file_path_with_its_embedding_output()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        var (code, output, error) = Run("export", "--model", model, "--format", "onnx", "--out", temp.File("out/encoder.onnx"));
        Assert.True(code == 0, error + output);
        Assert.Contains($"wrote {temp.File("out/encoder.onnx")}", output);
        Assert.Contains("output: sentence_embedding (batch, 32): pooler pooling, not normalised", output);
        Assert.Equal(["encoder.onnx"], Directory.GetFiles(temp.File("out")).Select(Path.GetFileName));
    }

    [Fact]
    public void A_decoder_is_refused_with_the_formats_that_apply()
    {
        using var temp = new TestModels.TempFolder();
        string gguf = CausalLmCliTests.TinyGguf(temp);
        var (code, output, error) = Run("export", "--model", gguf, "--format", "onnx", "--out", temp.File("x.onnx"));
        Assert.NotEqual(0, code);
        Assert.Contains($"--format onnx exports encoders (fine-tuned task models and embedding models); {gguf} is a decoder language model: " +
            "export it with --format hf, gguf or gguf-lora", error);
        Assert.DoesNotContain("   at ", error);
        Assert.False(File.Exists(temp.File("x.onnx")));
    }

    [Fact]
    public void Bad_outputs_and_options_are_refused_before_anything_is_written()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        string existing = temp.File("notes.txt");
        File.WriteAllText(existing, "keep");
        (string[] Args, string Message)[] cases =
        [
            (["--out", temp.File("model.gguf")], $"--out {temp.File("model.gguf")} ends in .gguf, which names a GGUF file; an ONNX export is a path ending in .onnx or a folder"),
            (["--out", existing], $"--out {existing} is an existing file; give a folder, or a path ending in .onnx for the file alone"),
            (["--out", temp.File("a.onnx"), "--dtype", "f16"], "--dtype applies to GGUF exports only (an ONNX export keeps fp32 weights)"),
        ];
        foreach (var (args, message) in cases)
        {
            var (code, output, error) = Run(["export", "--model", model, "--format", "onnx", .. args]);
            Assert.True(code != 0, output);
            Assert.Contains(message, error);
        }
        Assert.Equal("keep", File.ReadAllText(existing));
        Assert.False(File.Exists(temp.File("a.onnx")));

        var missing = Run("export", "--model", temp.File("nowhere"), "--format", "onnx", "--out", temp.File("b.onnx"));
        Assert.NotEqual(0, missing.Code);
        Assert.Contains("not found", missing.Error);
    }
}
