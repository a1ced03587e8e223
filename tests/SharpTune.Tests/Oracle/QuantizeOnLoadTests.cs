using LLama.Native;
using SharpTune.Checkpoints;
using SharpTune.Checkpoints.Gguf;
using SharpTune.ModelFolders.DecoderExports;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Gguf;
using SharpTune.Models.Quantized;
using SharpTune.Tests.Checkpoints.Gguf;
using SharpTune.Tests.Cli;
using static TorchSharp.torch;

namespace SharpTune.Tests.Oracle;

/// <summary>
/// A Hugging Face folder quantized on load (<c>--dtype q8_0|q4_0</c>): the blocks equal what llama.cpp's quantize tool
/// writes for the same tensors (llama.cpp quantizes an F32 GGUF of the same weights), the model computes as the
/// llama.cpp-quantized file kept stored does, and the command line takes it for generation and for training adapters.
/// </summary>
[Trait("Category", "NumericParity")]
[Collection(nameof(ConsoleCollection))]
public class QuantizeOnLoadTests
{
    static readonly TinyDecoderSizes Sizes = TinyDecoderSizes.Quantizable;   // the size StoredDecoderTests.Weights draws

    /// <summary>The same random llama as an F32 GGUF and as a Hugging Face folder (exported from it, tokenizer converted).</summary>
    static (string Gguf, string Folder) Model(TestModels.TempFolder temp)
    {
        string gguf = temp.File("f32.gguf"), folder = temp.File("hf");
        GgufTestModels.WriteLlama(gguf, "llama", Sizes, StoredDecoderTests.Weights());   // the stored tests' random llama
        using var lm = LanguageModel.Load(gguf, ScalarType.Float32);
        DecoderExport.MergedHuggingFace(lm.Model, DecoderSource.Gguf(gguf), folder);
        return (gguf, folder);
    }

    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, GgufTensorType.Q8_0)]
    [InlineData(LLamaFtype.MOSTLY_Q4_0, GgufTensorType.Q4_0)]
    public void Blocks_quantized_on_load_equal_llama_cpps_quantizer_output_for_the_same_tensors(LLamaFtype ftype, GgufTensorType type)
    {
        using var temp = new TestModels.TempFolder();
        var (gguf, folder) = Model(temp);
        string quantized = temp.File($"{type}.gguf");
        LlamaCpp.Quantize(gguf, quantized, ftype);

        var (tensors, source) = HuggingFaceCheckpoint.OpenStateDict(folder);
        using var ours = StoredWeights.Quantize(tensors, LanguageModel.ReadConfig(folder), type, source);
        var map = GgufModelMap.Open(quantized);
        int compared = 0;
        foreach (var mapping in map.Tensors)
        {
            // llama.cpp keeps some tensors in other types (Q4_0's output.weight is Q6_K): only the same type compares.
            if (map.File.GetTensor(mapping.GgufName).Type != type) continue;
            Assert.True(ours.Matrices.TryGetValue(mapping.HfKey, out var matrix), $"{mapping.HfKey} ({mapping.GgufName}) was not quantized on load");
            Assert.Equal(type, matrix.Type);
            using var scope = NewDisposeScope();
            var theirs = mapping.FromFile(map.File.ReadTensor(mapping.GgufName));   // q/k rows back in Hugging Face's order
            var mine = QuantizedOps.Dequantize(matrix);
            Assert.Equal(theirs.shape, mine.shape);
            float largest = (mine - theirs).abs().max().item<float>();
            Assert.True(largest == 0, $"{mapping.HfKey}: the {type} blocks differ from llama.cpp's (largest difference {largest})");
            compared++;
        }
        Assert.True(compared >= 7 * Sizes.Layers, $"only {compared} tensors compared");
        Assert.Contains($"weights quantized on load to {type}", ours.Summary);
    }

    [Fact]
    public void A_folder_quantized_to_q8_0_computes_as_the_file_llama_cpp_quantized()
    {
        using var temp = new TestModels.TempFolder();
        var (gguf, folder) = Model(temp);
        string quantized = temp.File("q8_0.gguf");
        LlamaCpp.Quantize(gguf, quantized, LLamaFtype.MOSTLY_Q8_0);
        var random = new Random(5);
        long[] ids = [1, .. Enumerable.Range(0, 23).Select(_ => (long)random.Next(3, Sizes.Vocab))];

        using var fromFolder = LanguageModel.Load(folder, WeightStorage.Quantized(GgufTensorType.Q8_0));
        using var fromFile = LanguageModel.Load(quantized, WeightStorage.AsStored);
        Assert.True(fromFolder.IsStored);
        Assert.Contains(fromFolder.Notes, n => n.StartsWith("weights quantized on load to Q8_0", StringComparison.Ordinal));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var expected = fromFile.Model.Forward(tensor(ids).unsqueeze(0));
        var actual = fromFolder.Model.Forward(tensor(ids).unsqueeze(0));
        Tolerances.AssertClose(expected, actual, Tolerances.DifferentKernelsThroughNetwork, "logits: folder quantized on load vs llama.cpp's Q8_0 file");
    }

    [Fact]
    public void The_command_line_generates_and_trains_adapters_over_a_folder_quantized_on_load_and_refuses_what_does_not_apply()
    {
        using var temp = new TestModels.TempFolder();
        var (gguf, folder) = Model(temp);
        string quantized = temp.File("q8_0.gguf");
        LlamaCpp.Quantize(gguf, quantized, LLamaFtype.MOSTLY_Q8_0);

        string[] Generate(string model, string dtype) => ["generate", "--model", model, "--dtype", dtype, "--prompt", "hello", "--greedy",
            "--max-new-tokens", "6", "--json", "--quiet"];
        var folderRun = CliHarness.Run(Generate(folder, "q8_0"));
        Assert.True(folderRun.Code == 0, folderRun.Error);
        var fileRun = CliHarness.Run(Generate(quantized, "stored"));
        Assert.True(fileRun.Code == 0, fileRun.Error);
        Assert.Equal(TokenIds(fileRun.Out), TokenIds(folderRun.Out));

        var refused = CliHarness.Run(Generate(gguf, "q8_0"));
        Assert.NotEqual(0, refused.Code);
        Assert.Contains("--dtype q8_0 quantizes a Hugging Face folder on load", refused.Error);
        Assert.DoesNotContain("   at ", refused.Error);

        string data = CausalLmCliTests.Data(temp), run = temp.File("run");
        var (code, output, error) = CliHarness.Run("train", "--model", folder, "--task", "causal-lm", "--train", data, "--method", "lora",
            "--base-dtype", "q4_0", "--max-steps", "2", "--batch-size", "4", "--out", run, "--max-length", "40");
        Assert.True(code == 0, error + output);
        Assert.Contains("base quantized on load to q4_0", output);
        Assert.Contains("weights quantized on load to Q4_0", output);

        var full = CliHarness.Run("train", "--model", folder, "--task", "causal-lm", "--train", data, "--method", "full",
            "--base-dtype", "q8_0", "--out", temp.File("full"));
        Assert.NotEqual(0, full.Code);
        Assert.Contains("--base-dtype q8_0 needs an adapter or prompt method", full.Error);
    }

    static List<string> TokenIds(string jsonLines) =>
        [.. jsonLines.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!["token_ids"]!.ToJsonString())];
}
