using SharpTune.Checkpoints.Gguf;
using SharpTune.Generation;
using SharpTune.ModelFolders.DecoderExports;
using SharpTune.Models.Decoders;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Checkpoints.Gguf;
using SharpTune.Tests.Models.Decoders.Gemma;
using SharpTune.Tests.ModelFolders.DecoderExports;
using SharpTune.Tests.Tokenization.Decoders;
using static SharpTune.Tests.ModelFolders.DecoderExports.ExportTestModels;

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
        Assert.Equal([Path.GetFullPath(adapter), Path.GetFullPath(temp.File("out/adapter.Modelfile"))], result.Files);
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

    /// <summary>
    /// GPT-2: LoRA over its Conv1D layers (weights stored (in, out), PEFT's fan_in_fan_out), the fused attn_qkv included;
    /// merged, and as base + adapter, in llama.cpp. Within 1e-3 as the GPT-2 oracle test (ggml's CPU GELU reads an f16 table).
    /// </summary>
    [Fact]
    public void Gpt2_with_lora_on_its_conv1d_layers_exports_merged_and_as_an_adapter_that_llama_cpp_runs()
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
        using var model = Adapted(basePath, Lora("c_attn", "c_proj", "c_fc"));
        int[] ids = [15496, 995, 11, 5846, 30605, 290, 50256, 464];
        using var adapted = Logits(model, ids);
        using (var plain = LanguageModel.Load(basePath))
        using (var baseLogits = Logits(plain.Model, ids))
            Tolerances.AssertDistinct(adapted, baseLogits, "adapted against base");

        string merged = temp.File("merged.gguf");
        DecoderExport.MergedGguf(model, DecoderSource.Gguf(basePath), merged, GgufTensorType.F32);
        Assert.False(GgufFile.Open(merged).HasTensor("output.weight")); // tied: llama.cpp uses token_embd
        AssertLlamaCppLogits(adapted, merged, null, ids, "gpt2 merged", 1e-3);

        string adapter = temp.File("adapter.gguf");
        DecoderExport.LoraGguf(model, DecoderSource.Gguf(basePath), adapter, GgufTensorType.F32);
        Assert.Equal([4L, 3 * 48], GgufFile.Open(adapter).GetTensor("blk.0.attn_qkv.weight.lora_b").Dims);
        AssertLlamaCppLogits(adapted, basePath, adapter, ids, "gpt2 base + adapter", 1e-3);
    }

    /// <summary>
    /// A Hugging Face base: llama with a SentencePiece tokenizer.json (Llama 2's legacy layout, byte fallback), qwen2 with
    /// GPT-2's byte-level vocabulary, ChatML's tokens and Qwen2's pre-tokenizer, its embedding rows padded beyond the
    /// tokenizer as Qwen2.5's are; gemma with llama's tokenizer and its tied head and norm offsets. The tokenizer is converted to GGUF metadata: llama.cpp must split the text into the
    /// same ids as SharpTune's tokenizer.json reader; the merged GGUF, the written base GGUF with the adapter, and the
    /// merged Hugging Face folder must all give the adapted model's logits.
    /// </summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("gemma")]
    public void Hugging_Face_base_exports_tokenize_and_compute_in_llama_cpp_as_in_SharpTune(string family)
    {
        using var temp = new TestModels.TempFolder();
        string folder = temp.File("base");
        Directory.CreateDirectory(folder);
        bool qwen = family == "qwen2", gemma = family == "gemma";
        double tolerance = gemma ? 1e-3 : 1e-4;                                             // ggml's GELU reads an f16 table
        int vocab = qwen ? 50272 : TinySentencePiece.Tokens.Length;
        string text;
        if (qwen)
        {
            string split = $$"""{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": {{System.Text.Json.JsonSerializer.Serialize(SharpTune.Tokenization.Decoders.ByteLevelPreTokenizer.Qwen2Pattern)}}}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}""";
            HfJson.WriteByteLevel(folder, Gpt2Reference.Tokens[..Gpt2Reference.EndOfText], Gpt2Reference.Merges,
                [("<|endoftext|>", 50256, true), ("<|im_start|>", 50257, true), ("<|im_end|>", 50258, true)], split,
                """{"add_bos_token": false, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"}""");
            text = "<|im_start|>user\nHello world, 42 dragons flew over   Zürich 東京 🙂<|im_end|>\n<|im_start|>assistant\n";
        }
        else
        {
            HfJson.WriteSentencePiece(folder, TinySentencePiece.Tokens, TinySentencePiece.Merges(),
                [("<unk>", TinySentencePiece.Unk, true), ("<s>", TinySentencePiece.Bos, true), ("</s>", TinySentencePiece.Eos, true)],
                """{"add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"}""");
            text = "hello world abc, héllo wörld";
        }
        var sizes = Sizes with { Vocab = vocab };
        var config = new System.Text.Json.Nodes.JsonObject
        {
            ["model_type"] = family, ["vocab_size"] = vocab, ["hidden_size"] = sizes.Hidden, ["intermediate_size"] = sizes.Intermediate,
            ["num_hidden_layers"] = sizes.Layers, ["num_attention_heads"] = sizes.Heads, ["num_key_value_heads"] = sizes.KvHeads,
            ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0, ["max_position_embeddings"] = sizes.Positions, ["tie_word_embeddings"] = qwen || gemma,
        };
        if (gemma) config["head_dim"] = sizes.HeadDim;                                      // Gemma's default is 256
        var weights = Scaled(gemma ? GemmaTestModels.HfGemma(sizes) : GgufTestModels.HfLlama(sizes, bias: qwen, tied: qwen));
        using (var plain = PretrainedDecoder.FromStateDict(config, weights.Select(kv => (kv.Key, kv.Value)))) plain.Save(folder);
        using var model = Adapted(config, weights.Select(kv => (kv.Key, kv.Value)), Lora("q_proj", "v_proj", "down_proj"));
        var source = DecoderSource.HuggingFace(folder);
        var ids = source.Tokenizer.Encode(text, addSpecialTokens: true, parseSpecial: true).ToArray();
        using var adapted = Logits(model, ids);

        string merged = temp.File("merged.gguf");
        DecoderExport.MergedGguf(model, source, merged, GgufTensorType.F32);
        using (var reference = new LlamaCpp(merged))
            Assert.Equal(ids, reference.Tokenize(text, addBos: source.Tokenizer.AddBos, special: true));
        AssertLlamaCppLogits(adapted, merged, null, ids, $"{family} merged from a Hugging Face base", tolerance);

        string adapter = temp.File("ollama/adapter.gguf");
        var result = DecoderExport.LoraGguf(model, source, adapter, GgufTensorType.F32, baseType: GgufTensorType.F32);
        string basePath = temp.File("ollama/base.gguf");
        Assert.Equal([Path.GetFullPath(adapter), Path.GetFullPath(basePath), Path.GetFullPath(temp.File("ollama/adapter.Modelfile"))], result.Files);
        AssertLlamaCppLogits(adapted, basePath, adapter, ids, $"{family} written base + adapter", tolerance);
        var modelfile = File.ReadAllLines(temp.File("ollama/adapter.Modelfile"));
        Assert.Contains("FROM ./base.gguf", modelfile);
        Assert.Contains("ADAPTER ./adapter.gguf", modelfile);
        Assert.Contains(qwen ? "PARAMETER stop \"<|im_end|>\"" : "PARAMETER stop \"</s>\"", modelfile);

        string hf = temp.File("merged-hf");
        DecoderExport.MergedHuggingFace(model, source, hf);
        using var reloaded = LanguageModel.Load(hf);
        Assert.Equal(ids, reloaded.Tokenizer.Encode(text, addSpecialTokens: true, parseSpecial: true));
        using var fromFolder = Logits(reloaded.Model, ids);
        Tolerances.AssertClose(adapted, fromFolder, Tolerances.DifferentKernelsThroughNetwork, "merged Hugging Face folder"); // W + sBA in one product
    }

    /// <summary>
    /// Llama's optional parts: head_dim not hidden / heads (attention.key_length), Llama 3 rope scaling (written as the
    /// converter does, a rope_freqs.weight tensor of base / scaled frequencies), biases on every projection
    /// (attention_bias, mlp_bias). The base is a vocabulary-only GGUF: a merged export needs only its tokenizer.
    /// </summary>
    [Fact]
    public void Merged_gguf_of_a_llama_with_rope_scaling_head_dim_and_biases_gives_llama_cpp_its_logits()
    {
        using var temp = new TestModels.TempFolder();
        var config = Models.Decoders.TinyDecoders.Config("llama");
        config["vocab_size"] = Sizes.Vocab;
        config["attention_bias"] = true;
        config["mlp_bias"] = true;
        string vocabOnly = temp.File("vocab.gguf");
        var writer = new GgufWriter().Set("general.architecture", "llama");
        GgufTestModels.AddVocabulary(writer, Sizes.Vocab);
        writer.Save(vocabOnly);
        TorchSharp.torch.manual_seed(4);
        using var plain = PretrainedDecoder.Create(config);
        var weights = plain.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.dim() == 2
            ? TorchSharp.torch.randn(kv.Value.shape) / MathF.Sqrt(kv.Value.shape[1]) : TorchSharp.torch.randn(kv.Value.shape) * 0.1f + (kv.Key.EndsWith("norm.weight") ? 1 : 0));
        using var model = Adapted(config, weights.Select(kv => (kv.Key, kv.Value)), Lora(AllLinears));
        using var adapted = Logits(model, Tokens);

        string merged = temp.File("merged.gguf");
        DecoderExport.MergedGguf(model, DecoderSource.Gguf(vocabOnly), merged, GgufTensorType.F32);
        var file = GgufFile.Open(merged);
        Assert.Equal(10, file.GetInt("llama.attention.key_length"));
        Assert.True(file.HasTensor("rope_freqs.weight") && file.HasTensor("blk.1.attn_output.bias") && file.HasTensor("blk.0.ffn_gate.bias"));
        AssertLlamaCppLogits(adapted, merged, null, Tokens, "llama with rope scaling, head_dim and biases");
    }

    /// <summary>
    /// The other types an export writes load in llama.cpp and score as in SharpTune reading the same file (which dequantizes
    /// exactly as ggml does): llama.cpp rounds activations to the weights' kind (f16, bf16, Q8_0 blocks) before each product,
    /// so the perplexities agree within that rounding, as in <see cref="DecoderLogitsTests"/>.
    /// </summary>
    [Theory]
    [InlineData(GgufTensorType.F16, 0.005)]
    [InlineData(GgufTensorType.BF16, 0.01)]
    [InlineData(GgufTensorType.Q8_0, 0.005)]
    public void Merged_gguf_of_every_type_scores_in_llama_cpp_as_in_SharpTune(GgufTensorType type, double tolerance)
    {
        using var temp = new TestModels.TempFolder();
        var sizes = Sizes with { Hidden = 64, Heads = 4, Positions = 160 };
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "qwen2", sizes: sizes);
        using var model = Adapted(basePath, Lora(AllLinears));
        string path = temp.File("merged.gguf");
        DecoderExport.MergedGguf(model, DecoderSource.Gguf(basePath), path, type);
        var random = new Random(5);
        int[] tokens = [1, .. Enumerable.Range(0, 127).Select(_ => random.Next(3, sizes.Vocab))];
        using var ours = LanguageModel.Load(path);
        double expected = PerplexityScorer.Score(ours.Model, [tokens]).Perplexity;
        using var reference = new LlamaCpp(path);
        double theirs = reference.Perplexity(tokens);
        Assert.True(Math.Abs(expected / theirs - 1) < tolerance, $"{type}: perplexity {expected:F4} in SharpTune, {theirs:F4} in llama.cpp");
    }

    /// <summary>
    /// A Llama 3.1 GGUF keeps its long-context rope factors in a rope_freqs.weight tensor, which SharpTune does not apply yet:
    /// the export copies it, so llama.cpp runs the exported file exactly as the base (same F32 weights, same factors).
    /// </summary>
    [Fact]
    public void A_bases_rope_freqs_tensor_is_carried_into_the_export()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = temp.File("base.gguf");
        float[] factors = [1, 1.5f, 4, 8]; // one per rotated pair: head_dim 8 / 2
        GgufTestModels.WriteLlama(basePath, "llama", Sizes, Scaled(GgufTestModels.HfLlama(Sizes, bias: false, tied: false)),
            edit: w => w.AddTensor("rope_freqs.weight", TorchSharp.torch.tensor(factors)));
        using var model = LanguageModel.Load(basePath);
        string exported = temp.File("export.gguf");
        var result = DecoderExport.MergedGguf(model.Model, DecoderSource.Gguf(basePath), exported, GgufTensorType.F32);
        Assert.Contains(result.Notes, n => n.StartsWith("rope_freqs.weight", StringComparison.Ordinal));
        Assert.Equal(factors, GgufFile.Open(exported).ReadTensor("rope_freqs.weight").data<float>().ToArray());
        float[][] expected, actual;
        using (var reference = new LlamaCpp(basePath)) expected = reference.Logits(Tokens);
        using (var reference = new LlamaCpp(exported)) actual = reference.Logits(Tokens);
        for (int t = 0; t < Tokens.Length; t++) Tolerances.AssertClose(expected[t], actual[t], Tolerances.Exact, $"position {t}");
    }
}
