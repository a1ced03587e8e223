using System.Text.Json.Nodes;
using T = SharpTune.Checkpoints.Gguf.GgufTensorTransform;

namespace SharpTune.Checkpoints.Gguf;

/// <summary>
/// Per-architecture tables: GGUF keys → Hugging Face config, GGUF tensor names → Hugging Face keys
/// (the inverse of llama.cpp's convert_hf_to_gguf.py for these models). Shapes are Hugging Face's.
/// </summary>
static class GgufArchitectures
{
    /// <summary>Llama and Qwen2 share names and layout; Llama q/k rows are permuted, Qwen2's are not and always have q/k/v biases.</summary>
    public static (JsonObject, List<GgufTensorMapping>) Llama(GgufFile f, string arch)
    {
        long hidden = Positive(f, $"{arch}.embedding_length");
        long layers = Positive(f, $"{arch}.block_count");
        long heads = Positive(f, $"{arch}.attention.head_count");
        long kvHeads = f.TryGetInt($"{arch}.attention.head_count_kv", out long kv) ? kv : heads;
        long ffn = Positive(f, $"{arch}.feed_forward_length");
        bool explicitHeadDim = f.TryGetInt($"{arch}.attention.key_length", out long headDim);
        if (!explicitHeadDim) headDim = hidden / heads;
        if (kvHeads <= 0 || heads % kvHeads != 0 || headDim <= 0 || !explicitHeadDim && hidden % heads != 0)
            throw new InvalidDataException($"{f.Path}: {heads} attention heads, {kvHeads} key/value heads and hidden size {hidden} do not fit together");
        if (headDim % 2 != 0)
            throw new InvalidDataException($"{f.Path}: head size {headDim} is odd; rotary embeddings rotate pairs, so it must be even");
        long vocab = Vocab(f, arch);
        bool tied = !f.HasTensor("output.weight");
        bool qwen = arch == "qwen2";
        bool bias = qwen || f.HasTensor("blk.0.attn_q.bias");

        var config = new JsonObject
        {
            ["model_type"] = arch,
            ["architectures"] = new JsonArray(qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"),
            ["hidden_size"] = hidden,
            ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads,
            ["num_key_value_heads"] = kvHeads,
            ["intermediate_size"] = ffn,
            ["hidden_act"] = "silu",
            ["rms_norm_eps"] = f.GetFloat($"{arch}.attention.layer_norm_rms_epsilon"),
            ["rope_theta"] = f.TryGetFloat($"{arch}.rope.freq_base", out double theta) ? theta : 10000.0,
            ["max_position_embeddings"] = Positive(f, $"{arch}.context_length"),
            ["vocab_size"] = vocab,
            ["tie_word_embeddings"] = tied,
            ["attention_bias"] = bias,
        };
        if (explicitHeadDim) config["head_dim"] = headDim;
        if (RopeScaling(f, arch) is { } scaling) config["rope_scaling"] = scaling;
        AddTokenIds(f, config);

        long q = heads * headDim, k = kvHeads * headDim;
        var t = new List<GgufTensorMapping> { new("model.embed_tokens.weight", "token_embd.weight", [vocab, hidden]) };
        var permute = qwen ? T.None : T.UnpermuteRows;
        for (long n = 0; n < layers; n++)
        {
            string hf = $"model.layers.{n}.", g = $"blk.{n}.";
            t.Add(new(hf + "input_layernorm.weight", g + "attn_norm.weight", [hidden]));
            t.Add(new(hf + "self_attn.q_proj.weight", g + "attn_q.weight", [q, hidden], permute, (int)heads));
            t.Add(new(hf + "self_attn.k_proj.weight", g + "attn_k.weight", [k, hidden], permute, (int)kvHeads));
            t.Add(new(hf + "self_attn.v_proj.weight", g + "attn_v.weight", [k, hidden]));
            if (bias)
            {
                t.Add(new(hf + "self_attn.q_proj.bias", g + "attn_q.bias", [q], permute, (int)heads));
                t.Add(new(hf + "self_attn.k_proj.bias", g + "attn_k.bias", [k], permute, (int)kvHeads));
                t.Add(new(hf + "self_attn.v_proj.bias", g + "attn_v.bias", [k]));
            }
            t.Add(new(hf + "self_attn.o_proj.weight", g + "attn_output.weight", [hidden, q]));
            t.Add(new(hf + "post_attention_layernorm.weight", g + "ffn_norm.weight", [hidden]));
            t.Add(new(hf + "mlp.gate_proj.weight", g + "ffn_gate.weight", [ffn, hidden]));
            t.Add(new(hf + "mlp.up_proj.weight", g + "ffn_up.weight", [ffn, hidden]));
            t.Add(new(hf + "mlp.down_proj.weight", g + "ffn_down.weight", [hidden, ffn]));
        }
        t.Add(new("model.norm.weight", "output_norm.weight", [hidden]));
        if (!tied) t.Add(new("lm_head.weight", "output.weight", [vocab, hidden]));
        return (config, t);
    }

    /// <summary>
    /// GPT-2: fused c_attn, Conv1D weights stored [in, out] by Hugging Face (GGUF keeps the Linear
    /// [out, in] layout, so they are transposed); the head is always tied to wte (a GGUF output.weight,
    /// which the converter writes as a copy of token_embd, is not used).
    /// </summary>
    public static (JsonObject, List<GgufTensorMapping>) Gpt2(GgufFile f)
    {
        long hidden = Positive(f, "gpt2.embedding_length");
        long layers = Positive(f, "gpt2.block_count");
        long heads = Positive(f, "gpt2.attention.head_count");
        long ffn = Positive(f, "gpt2.feed_forward_length");
        long positions = Positive(f, "gpt2.context_length");
        if (hidden % heads != 0)
            throw new InvalidDataException($"{f.Path}: hidden size {hidden} is not a multiple of the {heads} attention heads");
        long vocab = Vocab(f, "gpt2");
        var config = new JsonObject
        {
            ["model_type"] = "gpt2",
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["n_embd"] = hidden,
            ["n_layer"] = layers,
            ["n_head"] = heads,
            ["n_positions"] = positions,
            ["n_ctx"] = positions,
            ["n_inner"] = ffn,
            ["activation_function"] = "gelu_new",
            ["layer_norm_epsilon"] = f.GetFloat("gpt2.attention.layer_norm_epsilon"),
            ["vocab_size"] = vocab,
            ["tie_word_embeddings"] = true,
        };
        AddTokenIds(f, config);

        var t = new List<GgufTensorMapping>
        {
            new("transformer.wte.weight", "token_embd.weight", [vocab, hidden]),
            new("transformer.wpe.weight", "position_embd.weight", [positions, hidden]),
        };
        for (long n = 0; n < layers; n++)
        {
            string hf = $"transformer.h.{n}.", g = $"blk.{n}.";
            t.Add(new(hf + "ln_1.weight", g + "attn_norm.weight", [hidden]));
            t.Add(new(hf + "ln_1.bias", g + "attn_norm.bias", [hidden]));
            t.Add(new(hf + "attn.c_attn.weight", g + "attn_qkv.weight", [hidden, 3 * hidden], T.Transpose));
            t.Add(new(hf + "attn.c_attn.bias", g + "attn_qkv.bias", [3 * hidden]));
            t.Add(new(hf + "attn.c_proj.weight", g + "attn_output.weight", [hidden, hidden], T.Transpose));
            t.Add(new(hf + "attn.c_proj.bias", g + "attn_output.bias", [hidden]));
            t.Add(new(hf + "ln_2.weight", g + "ffn_norm.weight", [hidden]));
            t.Add(new(hf + "ln_2.bias", g + "ffn_norm.bias", [hidden]));
            t.Add(new(hf + "mlp.c_fc.weight", g + "ffn_up.weight", [hidden, ffn], T.Transpose));
            t.Add(new(hf + "mlp.c_fc.bias", g + "ffn_up.bias", [ffn]));
            t.Add(new(hf + "mlp.c_proj.weight", g + "ffn_down.weight", [ffn, hidden], T.Transpose));
            t.Add(new(hf + "mlp.c_proj.bias", g + "ffn_down.bias", [hidden]));
        }
        t.Add(new("transformer.ln_f.weight", "output_norm.weight", [hidden]));
        t.Add(new("transformer.ln_f.bias", "output_norm.bias", [hidden]));
        return (config, t);
    }

    static long Positive(GgufFile f, string key)
    {
        long value = f.GetInt(key);
        if (value <= 0 || value > int.MaxValue) throw new InvalidDataException($"{f.Path}: metadata '{key}' = {value}, expected a positive size");
        return value;
    }

    /// <summary>vocab_size from {arch}.vocab_size, else the tokenizer's token count, else token_embd's rows.</summary>
    static long Vocab(GgufFile f, string arch)
    {
        if (f.HasKey($"{arch}.vocab_size")) return Positive(f, $"{arch}.vocab_size");
        if (f.TryGetArray<string>("tokenizer.ggml.tokens", out var tokens) && tokens.Length > 0) return tokens.Length;
        return f.GetTensor("token_embd.weight").Shape[0];
    }

    /// <summary>Linear/YaRN rope scaling from rope.scaling.* keys, in the HF rope_scaling form.</summary>
    static JsonObject? RopeScaling(GgufFile f, string arch)
    {
        if (!f.TryGetString($"{arch}.rope.scaling.type", out string type) || type == "none") return null;
        var scaling = new JsonObject { ["rope_type"] = type, ["type"] = type };
        if (f.TryGetFloat($"{arch}.rope.scaling.factor", out double factor)) scaling["factor"] = factor;
        if (f.TryGetInt($"{arch}.rope.scaling.original_context_length", out long original))
            scaling["original_max_position_embeddings"] = original;
        return scaling;
    }

    static void AddTokenIds(GgufFile f, JsonObject config)
    {
        if (f.TryGetInt("tokenizer.ggml.bos_token_id", out long bos)) config["bos_token_id"] = bos;
        if (f.TryGetInt("tokenizer.ggml.eos_token_id", out long eos)) config["eos_token_id"] = eos;
    }
}
