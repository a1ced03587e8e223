using LLama.Native;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Generation;
using SharpTune.ModelFolders.DecoderExports;
using SharpTune.Models.Decoders;
using SharpTune.Tests.Checkpoints.Gguf;
using SharpTune.Tests.Models.Decoders.Gemma;
using static SharpTune.Tests.ModelFolders.DecoderExports.ExportTestModels;
using static TorchSharp.torch;

namespace SharpTune.Tests.Oracle;

/// <summary>
/// Gemma checked by llama.cpp on the same tiny random files: a GGUF written as llama.cpp's converter writes Gemma (norms
/// as 1 + w), read by SharpTune (F32 dense; F16 and Q8_0 kept in their blocks) and by llama.cpp; and SharpTune's own
/// exports of a Gemma with LoRA layers (merged GGUF, base + LoRA adapter GGUF) run by llama.cpp. Logits are held to 1e-3
/// of their scale, as GPT-2's: ggml's CPU GELU reads an f16 table (GGML_GELU_FP16), so llama.cpp's GeGLU rounds to f16.
/// </summary>
[Trait(Tolerances.Category, Tolerances.NumericParity)]
public class GemmaOracleTests
{
    /// <summary>Multi-query attention (4 heads over 1) with head_dim 24, not hidden / heads (16); rows a multiple of 32 for Q8_0.</summary>
    static readonly TinyDecoderSizes Sizes = new(Vocab: 301, Hidden: 64, Layers: 2, Heads: 4, KvHeads: 1, Intermediate: 96, Positions: 128, HeadDimension: 24);
    const double GeluTolerance = 1e-3;

    static string WriteGemma(TestModels.TempFolder temp, string name = "gemma.gguf")
    {
        string path = temp.File(name);
        GemmaTestModels.WriteGemma(path, Sizes, Scaled(GemmaTestModels.HfGemma(Sizes)));
        return path;
    }

    static void AssertLlamaCppLogits(Tensor expected, string gguf, string? adapter, string what)
    {
        using var reference = new LlamaCpp(gguf, adapter: adapter);
        var logits = reference.Logits(Tokens);
        for (int t = 0; t < Tokens.Length; t++) Tolerances.AssertClose(logits[t], Row(expected, t), GeluTolerance, $"{what} position {t}");
    }

    [Fact]
    public void Logits_and_greedy_tokens_equal_llama_cpp_on_the_same_f32_file()
    {
        using var temp = new TestModels.TempFolder();
        string path = WriteGemma(temp);
        using var ours = LanguageModel.Load(path);
        using var logits = Logits(ours.Model, Tokens);
        AssertLlamaCppLogits(logits, path, null, "gemma f32");

        int[] prompt = [1, 40, 41, 42];
        var generated = new TextGenerator(ours.Model, new GenerationOptions { Greedy = true, MaxNewTokens = 20 }).Generate([prompt]).Single();
        using var reference = new LlamaCpp(path);
        Assert.Equal(reference.Greedy(prompt, 20), generated.TokenIds);
    }

    /// <summary>Files llama.cpp wrote itself from the F32 one, read with their matrices kept in the file's blocks.</summary>
    [Theory]
    [InlineData(LLamaFtype.MOSTLY_F16)]
    [InlineData(LLamaFtype.MOSTLY_Q8_0)]
    public void Stored_f16_and_q8_0_files_score_within_half_a_percent_of_llama_cpp(LLamaFtype type)
    {
        using var temp = new TestModels.TempFolder();
        string source = WriteGemma(temp), path = temp.File($"gemma-{type}.gguf");
        LlamaCpp.Quantize(source, path, type);
        using var ours = LanguageModel.Load(path, WeightStorage.AsStored);
        Assert.True(ours.IsStored);
        Assert.DoesNotContain(ours.Model.Module.state_dict().Keys, k => k.EndsWith("_proj.weight", StringComparison.Ordinal) || k.Contains("embed_tokens"));
        var random = new Random(11);
        int[] tokens = [1, .. Enumerable.Range(0, 95).Select(_ => random.Next(3, Sizes.Vocab))];
        double stored = PerplexityScorer.Score(ours.Model, [tokens]).Perplexity;
        using var reference = new LlamaCpp(path);
        double theirs = reference.Perplexity(tokens);
        Assert.True(Math.Abs(stored / theirs - 1) < 0.005, $"{type}: stored perplexity {stored:F4} vs llama.cpp {theirs:F4}");
    }

    [Fact]
    public void Lora_exports_merged_and_as_an_adapter_that_llama_cpp_runs()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteGemma(temp, "base.gguf");
        using var model = Adapted(basePath, Lora(AllLinears));
        using var adapted = Logits(model, Tokens);
        using (var reference = new LlamaCpp(basePath))
            Tolerances.AssertDistinct(adapted, tensor(reference.Logits(Tokens).SelectMany(r => r).ToArray(), adapted.shape), "adapted against base");

        string merged = temp.File("merged.gguf");
        DecoderExport.MergedGguf(model, DecoderSource.Gguf(basePath), merged, GgufTensorType.F32);
        var file = GgufFile.Open(merged);
        Assert.Equal("gemma", file.GetString("general.architecture"));
        Assert.False(file.HasTensor("output.weight"));
        AssertLlamaCppLogits(adapted, merged, null, "gemma merged");

        string adapter = temp.File("adapter.gguf");
        DecoderExport.LoraGguf(model, DecoderSource.Gguf(basePath), adapter, GgufTensorType.F32);
        Assert.Equal("gemma", GgufFile.Open(adapter).GetString("general.architecture"));
        AssertLlamaCppLogits(adapted, basePath, adapter, "gemma base + adapter");
    }
}
