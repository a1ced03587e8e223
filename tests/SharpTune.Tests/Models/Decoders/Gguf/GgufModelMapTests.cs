using SharpTune.Models.Decoders.Gguf;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Tests.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders.Gguf;

public class GgufModelMapTests
{
    static readonly TinyDecoderSizes S = TinyDecoderSizes.Odd;

    static void AssertSameTensors(Dictionary<string, Tensor> expected, GgufModelMap map)
    {
        var read = map.ReadTensors().ToDictionary(kv => kv.Key, kv => kv.Tensor);
        Assert.Equal(expected.Keys.Order(), read.Keys.Order());
        Assert.Equal(map.Tensors.Select(t => t.HfKey), read.Keys);
        foreach (var (key, value) in expected)
        {
            Assert.Equal(value.shape, read[key].shape);
            Assert.True(read[key].eq(value).all().item<bool>(), key);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Llama_config_and_tensors_come_back_in_hugging_face_layout(bool tied)
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("llama.gguf");
        var hf = GgufTestModels.HfLlama(S, bias: false, tied);
        GgufTestModels.WriteLlama(path, "llama", S, hf);

        var map = GgufModelMap.Open(path);
        var c = map.Config;
        Assert.Equal("llama", (string)c["model_type"]!);
        Assert.Equal("LlamaForCausalLM", (string)c["architectures"]![0]!);
        Assert.Equal(32, (long)c["hidden_size"]!);
        Assert.Equal(2, (long)c["num_hidden_layers"]!);
        Assert.Equal(4, (long)c["num_attention_heads"]!);
        Assert.Equal(2, (long)c["num_key_value_heads"]!);
        Assert.Equal(37, (long)c["intermediate_size"]!);
        Assert.Equal(64, (long)c["max_position_embeddings"]!);
        Assert.Equal(99, (long)c["vocab_size"]!);
        Assert.Equal(1e-5, (double)c["rms_norm_eps"]!, 1e-9);
        Assert.Equal(10000.0, (double)c["rope_theta"]!);
        Assert.Equal(tied, (bool)c["tie_word_embeddings"]!);
        Assert.False((bool)c["attention_bias"]!);
        Assert.Equal(1, (long)c["bos_token_id"]!);
        Assert.Null(map.RopeFrequencyFactors);
        // Un-permuting the q/k rows recovers exactly the HF rows that were permuted when writing.
        AssertSameTensors(hf, map);
        Assert.Equal(tied, !map.Tensors.Any(t => t.HfKey == "lm_head.weight"));
    }

    [Fact]
    public void Qwen2_has_biases_and_is_not_permuted()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("qwen2.gguf");
        var hf = GgufTestModels.HfLlama(S, bias: true, tied: true);
        GgufTestModels.WriteLlama(path, "qwen2", S, hf, edit: w => w.Set("qwen2.rope.freq_base", 1000000f));
        var map = GgufModelMap.Open(path);
        var c = map.Config;
        Assert.Equal("qwen2", (string)c["model_type"]!);
        Assert.Equal("Qwen2ForCausalLM", (string)c["architectures"]![0]!);
        Assert.True((bool)c["attention_bias"]!);
        Assert.Equal(1e6, (double)c["rope_theta"]!);
        Assert.All(map.Tensors, t => Assert.NotEqual(GgufTensorTransform.PermutedRows, t.Transform));
        Assert.Contains(map.Tensors, t => t.HfKey == "model.layers.1.self_attn.k_proj.bias");
        AssertSameTensors(hf, map);
    }

    [Fact]
    public void Gpt2_conv1d_weights_are_transposed_back_and_the_head_is_tied()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("gpt2.gguf");
        var hf = GgufTestModels.HfGpt2(S);
        GgufTestModels.WriteGpt2(path, S, hf);
        var map = GgufModelMap.Open(path);
        var c = map.Config;
        Assert.Equal("gpt2", (string)c["model_type"]!);
        Assert.Equal(32, (long)c["n_embd"]!);
        Assert.Equal(2, (long)c["n_layer"]!);
        Assert.Equal(4, (long)c["n_head"]!);
        Assert.Equal(64, (long)c["n_positions"]!);
        Assert.Equal(37, (long)c["n_inner"]!);
        Assert.Equal(99, (long)c["vocab_size"]!);
        Assert.True((bool)c["tie_word_embeddings"]!);
        Assert.Null(map.Tokenizer);
        AssertSameTensors(hf, map);
    }

    [Fact]
    public void Tokenizer_data_comes_from_metadata()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("llama.gguf");
        GgufTestModels.WriteLlama(path, "llama", S, GgufTestModels.HfLlama(S, false, true));
        var tok = GgufModelMap.Open(path).Tokenizer!;
        Assert.Equal("llama", tok.Model);
        Assert.Equal("default", tok.Pre);
        Assert.Equal(99, tok.Tokens.Length);
        Assert.Equal("</s>", tok.Tokens[2]);
        Assert.Equal(3, tok.TokenTypes![1]);
        Assert.Equal(-5f, tok.Scores![5]);
        Assert.Null(tok.Merges);
        Assert.Equal((1, 2, 0), (tok.BosTokenId!.Value, tok.EosTokenId!.Value, tok.UnknownTokenId!.Value));
        Assert.Null(tok.PaddingTokenId);
        Assert.True(tok.AddBosToken);
        Assert.False(tok.AddEosToken);
        Assert.StartsWith("{% for m in messages %}", tok.ChatTemplate);
    }

    [Fact]
    public void Rope_scaling_keys_and_llama3_rope_freqs_are_reported()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("llama.gguf");
        GgufTestModels.WriteLlama(path, "llama", S, GgufTestModels.HfLlama(S, false, true), edit: w => w
            .Set("llama.rope.scaling.type", "linear").Set("llama.rope.scaling.factor", 4f)
            .Set("llama.rope.scaling.original_context_length", 32u)
            .AddTensor("rope_freqs.weight", ones(S.HeadDim / 2)));
        var map = GgufModelMap.Open(path);
        var scaling = map.Config["rope_scaling"]!;
        Assert.Equal("linear", (string)scaling["rope_type"]!);
        Assert.Equal(4.0, (double)scaling["factor"]!);
        Assert.Equal(32, (long)scaling["original_max_position_embeddings"]!);
        Assert.Equal("rope_freqs.weight", map.RopeFrequencyFactors);
        Assert.DoesNotContain(map.Tensors, t => t.GgufName == "rope_freqs.weight");
    }

    [Fact]
    public void An_unsupported_architecture_is_named_with_the_supported_ones()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("mamba.gguf");
        new GgufWriter().Set("general.architecture", "mamba").Save(path);
        var error = Assert.Throws<NotSupportedException>(() => GgufModelMap.Open(path));
        Assert.Contains("architecture 'mamba' is not supported; supported: llama, qwen2, gpt2", error.Message);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void A_wrongly_shaped_or_missing_tensor_is_named_with_the_expected_shape()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("bad.gguf");
        // The file claims 3 layers, so layer 2's tensors are missing.
        GgufTestModels.WriteLlama(path, "llama", S, GgufTestModels.HfLlama(S, false, true), edit: w => w.Set("llama.block_count", 3u));
        var missing = Assert.Throws<InvalidDataException>(() => GgufModelMap.Open(path));
        Assert.Contains("tensor 'blk.2.attn_norm.weight' (for model.layers.2.input_layernorm.weight) is missing; expected shape [32]", missing.Message);

        // 8 heads of 4 with 2 key/value heads: k_proj must be [8, 32], the file has [16, 32].
        GgufTestModels.WriteLlama(path, "llama", S, GgufTestModels.HfLlama(S, false, true), edit: w => w.Set("llama.attention.head_count", 8u));
        var wrong = Assert.Throws<InvalidDataException>(() => GgufModelMap.Open(path));
        Assert.Contains("tensor 'blk.0.attn_k.weight' has shape [16, 32], expected [8, 32] from the config", wrong.Message);
        Assert.Contains(path, wrong.Message);
    }
}
