using System.Text.Json.Nodes;
using SharpTune.Models.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders;

/// <summary>Tiny random decoders of every family, with odd sizes so that shape bugs show.</summary>
static class TinyDecoders
{
    public const int Vocab = 97;

    /// <summary>The families every decoder test runs through.</summary>
    public static TheoryData<string> Families => new() { "llama", "qwen2", "gpt2", "gemma" };

    /// <summary>
    /// llama: 6 heads over 2 key/value heads with head_dim 10 (not hidden / heads), llama3 rope scaling, untied head;
    /// qwen2: 6 heads over 3 key/value heads, head_dim from hidden / heads, tied head, q/k/v biases; gpt2: 6 heads, n_inner 83;
    /// gemma: 6 heads over 1 key/value head with head_dim 10, GeGLU, tied head.
    /// </summary>
    public static JsonObject Config(string family) => family switch
    {
        "llama" => new JsonObject
        {
            ["model_type"] = "llama", ["vocab_size"] = Vocab, ["hidden_size"] = 48, ["intermediate_size"] = 83,
            ["num_hidden_layers"] = 3, ["num_attention_heads"] = 6, ["num_key_value_heads"] = 2, ["head_dim"] = 10,
            ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0, ["max_position_embeddings"] = 256, ["initializer_range"] = 0.1,
            ["tie_word_embeddings"] = false, ["bos_token_id"] = 1, ["eos_token_id"] = new JsonArray(2, 3),
            ["rope_scaling"] = new JsonObject
            {
                ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0,
                ["original_max_position_embeddings"] = 64,
            },
        },
        "qwen2" => new JsonObject
        {
            ["model_type"] = "qwen2", ["vocab_size"] = Vocab, ["hidden_size"] = 48, ["intermediate_size"] = 83,
            ["num_hidden_layers"] = 3, ["num_attention_heads"] = 6, ["num_key_value_heads"] = 3, ["rms_norm_eps"] = 1e-6,
            ["rope_theta"] = 1000000.0, ["max_position_embeddings"] = 256, ["initializer_range"] = 0.1, ["tie_word_embeddings"] = true,
            ["use_sliding_window"] = false, ["sliding_window"] = 4096, ["max_window_layers"] = 21, ["eos_token_id"] = 5,
        },
        "gpt2" => new JsonObject
        {
            ["model_type"] = "gpt2", ["vocab_size"] = Vocab, ["n_embd"] = 48, ["n_layer"] = 3, ["n_head"] = 6, ["n_positions"] = 40,
            ["n_inner"] = 83, ["initializer_range"] = 0.1, ["bos_token_id"] = 0, ["eos_token_id"] = 0,
        },
        // gemma: multi-query attention (6 heads over 1), head_dim 10 (not hidden / heads), GeGLU, tied head.
        "gemma" => new JsonObject
        {
            ["model_type"] = "gemma", ["vocab_size"] = Vocab, ["hidden_size"] = 48, ["intermediate_size"] = 83,
            ["num_hidden_layers"] = 3, ["num_attention_heads"] = 6, ["num_key_value_heads"] = 1, ["head_dim"] = 10,
            ["hidden_act"] = "gelu", ["hidden_activation"] = "gelu_pytorch_tanh", ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 10000.0,
            ["max_position_embeddings"] = 256, ["initializer_range"] = 0.1, ["tie_word_embeddings"] = true, ["bos_token_id"] = 2, ["eos_token_id"] = 1,
        },
        _ => throw new ArgumentException(family),
    };

    /// <summary>A freshly initialised model, seeded, in eval mode.</summary>
    public static ICausalLanguageModel Create(string family, int seed = 7, JsonObject? config = null)
    {
        manual_seed(seed);
        var model = PretrainedDecoder.Create(config ?? Config(family));
        model.Module.eval();
        return model;
    }

    /// <summary>Seeded random token ids (B, T) in [0, vocab).</summary>
    public static Tensor Ids(int batch, int length, int seed = 11)
    {
        manual_seed(seed);
        return randint(0, Vocab, [batch, length], dtype: ScalarType.Int64);
    }

    /// <summary>A fresh temporary folder, removed when disposed.</summary>
    public sealed class TempFolder : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("sharptune-decoders-").FullName;
        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
