using SharpTune.Models.Decoders.Gguf;
using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Checkpoints.Gguf;

/// <summary>Sizes of a tiny decoder written to GGUF by the tests; <paramref name="HeadDimension"/> null: hidden / heads.</summary>
public sealed record TinyDecoderSizes(int Vocab, int Hidden, int Layers, int Heads, int KvHeads, int Intermediate, int Positions, int? HeadDimension = null)
{
    /// <summary>Odd sizes, so shape bugs show.</summary>
    public static TinyDecoderSizes Odd { get; } = new(99, 32, 2, 4, 2, 37, 64);

    /// <summary>Every matrix row a multiple of 256, as llama.cpp's K-quants need.</summary>
    public static TinyDecoderSizes Quantizable { get; } = new(300, 256, 2, 4, 2, 512, 128);

    public int HeadDim => HeadDimension ?? Hidden / Heads;
}

/// <summary>Tiny random llama/qwen2/gpt2 models: Hugging Face tensors, and GGUF files written from them as llama.cpp's converter would.</summary>
public static class GgufTestModels
{
    /// <summary>HF state dict of a random Llama (or Qwen2, with q/k/v biases) decoder.</summary>
    public static Dictionary<string, Tensor> HfLlama(TinyDecoderSizes s, bool bias, bool tied, int seed = 5)
    {
        manual_seed(seed);
        int q = s.Heads * s.HeadDim, k = s.KvHeads * s.HeadDim;
        var t = new Dictionary<string, Tensor> { ["model.embed_tokens.weight"] = randn(s.Vocab, s.Hidden) };
        for (int n = 0; n < s.Layers; n++)
        {
            string p = $"model.layers.{n}.";
            t[p + "input_layernorm.weight"] = rand(s.Hidden) + 0.5f;
            t[p + "self_attn.q_proj.weight"] = randn(q, s.Hidden);
            t[p + "self_attn.k_proj.weight"] = randn(k, s.Hidden);
            t[p + "self_attn.v_proj.weight"] = randn(k, s.Hidden);
            if (bias)
            {
                t[p + "self_attn.q_proj.bias"] = randn(q);
                t[p + "self_attn.k_proj.bias"] = randn(k);
                t[p + "self_attn.v_proj.bias"] = randn(k);
            }
            t[p + "self_attn.o_proj.weight"] = randn(s.Hidden, q);
            t[p + "post_attention_layernorm.weight"] = rand(s.Hidden) + 0.5f;
            t[p + "mlp.gate_proj.weight"] = randn(s.Intermediate, s.Hidden);
            t[p + "mlp.up_proj.weight"] = randn(s.Intermediate, s.Hidden);
            t[p + "mlp.down_proj.weight"] = randn(s.Hidden, s.Intermediate);
        }
        t["model.norm.weight"] = rand(s.Hidden) + 0.5f;
        if (!tied) t["lm_head.weight"] = randn(s.Vocab, s.Hidden);
        return t;
    }

    /// <summary>Writes <paramref name="hf"/> as a llama.cpp GGUF of <paramref name="arch"/> (llama q/k rows permuted), with a SentencePiece-style vocabulary.</summary>
    public static void WriteLlama(string path, string arch, TinyDecoderSizes s, Dictionary<string, Tensor> hf,
        GgufTensorType type = GgufTensorType.F32, Action<GgufWriter>? edit = null)
    {
        var w = new GgufWriter()
            .Set("general.architecture", arch)
            .Set("general.name", "tiny")
            .Set("general.file_type", 0u)
            .Set($"{arch}.context_length", (uint)s.Positions)
            .Set($"{arch}.embedding_length", (uint)s.Hidden)
            .Set($"{arch}.block_count", (uint)s.Layers)
            .Set($"{arch}.feed_forward_length", (uint)s.Intermediate)
            .Set($"{arch}.attention.head_count", (uint)s.Heads)
            .Set($"{arch}.attention.head_count_kv", (uint)s.KvHeads)
            .Set($"{arch}.attention.layer_norm_rms_epsilon", 1e-5f)
            .Set($"{arch}.rope.freq_base", 10000f)
            .Set($"{arch}.rope.dimension_count", (uint)s.HeadDim);
        AddVocabulary(w, s.Vocab);
        bool permute = arch == "llama";
        Tensor Rows(string key, int heads) => permute ? GgufPermutation.ToLlamaCpp(hf[key], heads) : hf[key];
        // 1-D tensors stay F32, as llama.cpp's converter keeps them.
        void Add(string name, Tensor t) => w.AddTensor(name, t, t.dim() == 1 ? GgufTensorType.F32 : type);
        Add("token_embd.weight", hf["model.embed_tokens.weight"]);
        for (int n = 0; n < s.Layers; n++)
        {
            string p = $"model.layers.{n}.", g = $"blk.{n}.";
            Add(g + "attn_norm.weight", hf[p + "input_layernorm.weight"]);
            Add(g + "attn_q.weight", Rows(p + "self_attn.q_proj.weight", s.Heads));
            Add(g + "attn_k.weight", Rows(p + "self_attn.k_proj.weight", s.KvHeads));
            Add(g + "attn_v.weight", hf[p + "self_attn.v_proj.weight"]);
            if (hf.ContainsKey(p + "self_attn.q_proj.bias"))
            {
                Add(g + "attn_q.bias", Rows(p + "self_attn.q_proj.bias", s.Heads));
                Add(g + "attn_k.bias", Rows(p + "self_attn.k_proj.bias", s.KvHeads));
                Add(g + "attn_v.bias", hf[p + "self_attn.v_proj.bias"]);
            }
            Add(g + "attn_output.weight", hf[p + "self_attn.o_proj.weight"]);
            Add(g + "ffn_norm.weight", hf[p + "post_attention_layernorm.weight"]);
            Add(g + "ffn_gate.weight", hf[p + "mlp.gate_proj.weight"]);
            Add(g + "ffn_up.weight", hf[p + "mlp.up_proj.weight"]);
            Add(g + "ffn_down.weight", hf[p + "mlp.down_proj.weight"]);
        }
        Add("output_norm.weight", hf["model.norm.weight"]);
        if (hf.TryGetValue("lm_head.weight", out var head)) Add("output.weight", head);
        edit?.Invoke(w);
        w.Save(path);
    }

    /// <summary>A SentencePiece-style vocabulary: unk, bos, eos, 256 byte tokens, then plain pieces.</summary>
    public static void AddVocabulary(GgufWriter w, int vocab)
    {
        var tokens = new string[vocab];
        var types = new int[vocab];
        var scores = new float[vocab];
        for (int i = 0; i < vocab; i++)
        {
            (tokens[i], types[i]) = i switch
            {
                0 => ("<unk>", 2),
                1 => ("<s>", 3),
                2 => ("</s>", 3),
                < 259 when vocab >= 259 => ($"<0x{i - 3:X2}>", 6),
                _ => ($"▁tok{i}", 1),
            };
            scores[i] = -i;
        }
        w.Set("tokenizer.ggml.model", "llama")
            .Set("tokenizer.ggml.pre", "default")
            .Set("tokenizer.ggml.tokens", tokens)
            .Set("tokenizer.ggml.scores", scores)
            .Set("tokenizer.ggml.token_type", types)
            .Set("tokenizer.ggml.bos_token_id", 1u)
            .Set("tokenizer.ggml.eos_token_id", 2u)
            .Set("tokenizer.ggml.unknown_token_id", 0u)
            .Set("tokenizer.ggml.add_bos_token", true)
            .Set("tokenizer.ggml.add_eos_token", false)
            .Set("tokenizer.chat_template", "{% for m in messages %}{{ m['content'] }}{% endfor %}");
    }

    /// <summary>HF GPT-2 state dict (Conv1D weights [in, out]) of a random model.</summary>
    public static Dictionary<string, Tensor> HfGpt2(TinyDecoderSizes s, int seed = 6)
    {
        manual_seed(seed);
        var t = new Dictionary<string, Tensor>
        {
            ["transformer.wte.weight"] = randn(s.Vocab, s.Hidden),
            ["transformer.wpe.weight"] = randn(s.Positions, s.Hidden),
        };
        for (int n = 0; n < s.Layers; n++)
        {
            string p = $"transformer.h.{n}.";
            t[p + "ln_1.weight"] = randn(s.Hidden); t[p + "ln_1.bias"] = randn(s.Hidden);
            t[p + "attn.c_attn.weight"] = randn(s.Hidden, 3 * s.Hidden); t[p + "attn.c_attn.bias"] = randn(3 * s.Hidden);
            t[p + "attn.c_proj.weight"] = randn(s.Hidden, s.Hidden); t[p + "attn.c_proj.bias"] = randn(s.Hidden);
            t[p + "ln_2.weight"] = randn(s.Hidden); t[p + "ln_2.bias"] = randn(s.Hidden);
            t[p + "mlp.c_fc.weight"] = randn(s.Hidden, s.Intermediate); t[p + "mlp.c_fc.bias"] = randn(s.Intermediate);
            t[p + "mlp.c_proj.weight"] = randn(s.Intermediate, s.Hidden); t[p + "mlp.c_proj.bias"] = randn(s.Hidden);
        }
        t["transformer.ln_f.weight"] = randn(s.Hidden);
        t["transformer.ln_f.bias"] = randn(s.Hidden);
        return t;
    }

    /// <summary>Writes <paramref name="hf"/> as llama.cpp's converter does: Conv1D weights transposed to [out, in], output = a copy of wte.</summary>
    public static void WriteGpt2(string path, TinyDecoderSizes s, Dictionary<string, Tensor> hf, Action<GgufWriter>? edit = null)
    {
        var w = new GgufWriter()
            .Set("general.architecture", "gpt2")
            .Set("gpt2.context_length", (uint)s.Positions)
            .Set("gpt2.embedding_length", (uint)s.Hidden)
            .Set("gpt2.block_count", (uint)s.Layers)
            .Set("gpt2.feed_forward_length", (uint)s.Intermediate)
            .Set("gpt2.attention.head_count", (uint)s.Heads)
            .Set("gpt2.attention.layer_norm_epsilon", 1e-5f);
        w.AddTensor("token_embd.weight", hf["transformer.wte.weight"]);
        w.AddTensor("position_embd.weight", hf["transformer.wpe.weight"]);
        string[] names = ["ln_1", "attn_norm", "attn.c_attn", "attn_qkv", "attn.c_proj", "attn_output", "ln_2", "ffn_norm", "mlp.c_fc", "ffn_up", "mlp.c_proj", "ffn_down"];
        for (int n = 0; n < s.Layers; n++)
            for (int i = 0; i < names.Length; i += 2)
            {
                var weight = hf[$"transformer.h.{n}.{names[i]}.weight"];
                w.AddTensor($"blk.{n}.{names[i + 1]}.weight", weight.dim() == 2 ? weight.t() : weight);
                w.AddTensor($"blk.{n}.{names[i + 1]}.bias", hf[$"transformer.h.{n}.{names[i]}.bias"]);
            }
        w.AddTensor("output_norm.weight", hf["transformer.ln_f.weight"]);
        w.AddTensor("output_norm.bias", hf["transformer.ln_f.bias"]);
        w.AddTensor("output.weight", hf["transformer.wte.weight"]);
        edit?.Invoke(w);
        w.Save(path);
    }
}
