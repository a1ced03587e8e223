using SharpTune.Checkpoints.Gguf;
using SharpTune.Generation;
using SharpTune.ModelFolders.DecoderExport;
using SharpTune.Models.Decoders;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Checkpoints.Gguf;
using SharpTune.Tests.ModelFolders.DecoderExport;
using static SharpTune.Tests.ModelFolders.DecoderExport.ExportTestModels;

namespace SharpTune.Tests.Oracle;

/// <summary>
/// The exports llama.cpp and Ollama run, checked by llama.cpp itself: a model with LoRA layers (lora_B random, so the
/// adapter moves the logits far beyond rounding) exported as a merged GGUF, and as its base GGUF plus a LoRA adapter GGUF,
/// must give llama.cpp the adapted model's per-position logits (F32 files, 1e-4 of their scale as the other oracle tests)
/// and its greedy continuation.
/// </summary>
[Trait(Tolerances.Category, Tolerances.NumericParity)]
public class DecoderExportTests
{
    /// <summary>Per-position logits of llama.cpp on <paramref name="gguf"/> (with <paramref name="adapter"/>) against <paramref name="expected"/> (T, V).</summary>
    static void AssertLlamaCppLogits(TorchSharp.torch.Tensor expected, string gguf, string? adapter, int[] tokens, string what, double tolerance = 1e-4)
    {
        using var reference = new LlamaCpp(gguf, adapter: adapter);
        var logits = reference.Logits(tokens);
        for (int t = 0; t < tokens.Length; t++) Tolerances.AssertClose(logits[t], Row(expected, t), tolerance, $"{what} position {t}");
    }

    [Theory]
    [InlineData("llama", false)]
    [InlineData("llama", true)]
    [InlineData("qwen2", false)]
    public void Merged_gguf_gives_llama_cpp_the_adapted_models_logits(string family, bool tied)
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), family, tied);
        using var model = Adapted(basePath, Lora(AllLinears));
        using var adapted = Logits(model, Tokens);
        using (var reference = new LlamaCpp(basePath))
            Tolerances.AssertDistinct(adapted, TorchSharp.torch.tensor(reference.Logits(Tokens).SelectMany(r => r).ToArray(), adapted.shape), "adapted against base");

        string merged = temp.File("merged.gguf");
        DecoderExport.MergedGguf(model, DecoderSource.Gguf(basePath), merged, GgufTensorType.F32);
        AssertLlamaCppLogits(adapted, merged, null, Tokens, $"{family} merged");
    }

    /// <summary>Ranks and alphas differ by layer (one alpha per file in llama.cpp: the others are folded into lora_b).</summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void Lora_gguf_over_the_base_gives_llama_cpp_the_adapted_models_logits_and_greedy_tokens(string family)
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), family);
        using var model = Adapted(basePath, Lora(name => name switch
        {
            "q_proj" or "k_proj" => new LoraOptions(4, 16, 0, ["q_proj", "k_proj"], "none"),
            "v_proj" or "o_proj" => new LoraOptions(2, 3, 0, ["v_proj", "o_proj"], "none"),
            "down_proj" => new LoraOptions(3, 6, 0, ["down_proj"], "none"),
            _ => null,
        }));
        using var adapted = Logits(model, Tokens);

        string adapter = temp.File("out/adapter.gguf");
        var result = DecoderExport.LoraGguf(model, DecoderSource.Gguf(basePath), adapter, GgufTensorType.F32);
        Assert.Equal([Path.GetFullPath(adapter), Path.Combine(Path.GetFullPath(temp.File("out")), "Modelfile")], result.Files);
        var file = GgufFile.Open(adapter);
        Assert.Equal("adapter", file.GetString("general.type"));
        Assert.Equal(GgufValueType.Float32, file.Metadata["adapter.lora.alpha"].Type);
        Assert.Equal([4L, 48], file.GetTensor("blk.1.attn_q.weight.lora_a").Shape);
        Assert.Equal([48L, 3], file.GetTensor("blk.0.ffn_down.weight.lora_b").Shape);
        Assert.Equal(2 * 2 * 5, file.Tensors.Count);

        AssertLlamaCppLogits(adapted, basePath, adapter, Tokens, $"{family} base + adapter");
        int[] prompt = [1, 40, 41, 42];
        var ours = new TextGenerator(model, new GenerationOptions { Greedy = true, MaxNewTokens = 20 }).Generate([prompt]).Single();
        using var reference = new LlamaCpp(basePath, adapter: adapter);
        Assert.Equal(reference.Greedy(prompt, 20), ours.TokenIds);
    }

    /// <summary>GPT-2 takes no adapter layers in SharpTune yet; its merged export is its plain weights, checked as the GPT-2 oracle test (ggml's f16 GELU table: 1e-3).</summary>
    [Fact]
    public void Gpt2_gguf_export_gives_llama_cpp_the_models_logits()
    {
        using var temp = new TestModels.TempFolder();
        var tokens = Tokenization.Decoders.Gpt2Reference.Tokens;
        var sizes = new TinyDecoderSizes(tokens.Length, Hidden: 48, Layers: 2, Heads: 6, KvHeads: 6, Intermediate: 83, Positions: 96);
        var hf = GgufTestModels.HfGpt2(sizes).ToDictionary(kv => kv.Key, kv => kv.Value.dim() != 2 ? kv.Value
            : kv.Key.Contains(".attn.") || kv.Key.Contains(".mlp.") ? kv.Value / MathF.Sqrt(kv.Value.shape[0]) : kv.Value / MathF.Sqrt(kv.Value.shape[1]));
        string basePath = temp.File("gpt2.gguf");
        GgufTestModels.WriteGpt2(basePath, sizes, hf, w => w
            .Set("tokenizer.ggml.model", "gpt2").Set("tokenizer.ggml.pre", "gpt-2")
            .Set("tokenizer.ggml.tokens", tokens).Set("tokenizer.ggml.merges", Tokenization.Decoders.Gpt2Reference.Merges)
            .Set("tokenizer.ggml.token_type", tokens.Select(t => t == "<|endoftext|>" ? 3 : 1).ToArray())
            .Set("tokenizer.ggml.bos_token_id", 50256u).Set("tokenizer.ggml.eos_token_id", 50256u));
        using var model = LanguageModel.Load(basePath);
        int[] ids = [15496, 995, 11, 5846, 30605, 290, 50256, 464];
        using var expected = Logits(model.Model, ids);

        string exported = temp.File("export.gguf");
        DecoderExport.MergedGguf(model.Model, DecoderSource.Gguf(basePath), exported, GgufTensorType.F32);
        Assert.False(GgufFile.Open(exported).HasTensor("output.weight")); // tied: llama.cpp uses token_embd
        AssertLlamaCppLogits(expected, exported, null, ids, "gpt2 export", 1e-3);
        var error = Assert.Throws<ArgumentException>(() => DecoderExport.LoraGguf(model.Model, DecoderSource.Gguf(basePath), temp.File("a.gguf")));
        Assert.Contains("no LoRA layers", error.Message);
    }
}
