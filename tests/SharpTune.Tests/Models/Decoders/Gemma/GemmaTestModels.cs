using SharpTune.Checkpoints.Gguf;
using SharpTune.Tests.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders.Gemma;

/// <summary>Tiny random Gemma models: Hugging Face tensors, and GGUF files written from them as llama.cpp's converter would.</summary>
public static class GemmaTestModels
{
    /// <summary>HF state dict of a random Gemma decoder: Llama's keys, tied, norm weights drawn as offsets from one (in [-0.5, 0.5]).</summary>
    public static Dictionary<string, Tensor> HfGemma(TinyDecoderSizes s, int seed = 8)
    {
        var t = GgufTestModels.HfLlama(s, bias: false, tied: true, seed);
        foreach (string key in t.Keys.Where(k => k.EndsWith("norm.weight", StringComparison.Ordinal)).ToList()) t[key] = rand(s.Hidden) - 0.5f;
        return t;
    }

    /// <summary>
    /// Writes <paramref name="hf"/> as llama.cpp's converter writes a Gemma: <c>gemma.*</c> keys with key/value lengths (no rope
    /// keys: llama.cpp's defaults), norm weights plus one (HF computes x·(1 + w), llama.cpp x·w), q/k rows as they are, no output.weight.
    /// </summary>
    public static void WriteGemma(string path, TinyDecoderSizes s, Dictionary<string, Tensor> hf, GgufTensorType type = GgufTensorType.F32)
    {
        var w = new GgufWriter()
            .Set("general.architecture", "gemma")
            .Set("general.name", "tiny-gemma")
            .Set("gemma.context_length", (uint)s.Positions)
            .Set("gemma.embedding_length", (uint)s.Hidden)
            .Set("gemma.block_count", (uint)s.Layers)
            .Set("gemma.feed_forward_length", (uint)s.Intermediate)
            .Set("gemma.attention.head_count", (uint)s.Heads)
            .Set("gemma.attention.head_count_kv", (uint)s.KvHeads)
            .Set("gemma.attention.layer_norm_rms_epsilon", 1e-6f)
            .Set("gemma.attention.key_length", (uint)s.HeadDim)
            .Set("gemma.attention.value_length", (uint)s.HeadDim);
        GgufTestModels.AddVocabulary(w, s.Vocab);
        void Add(string name, Tensor t) => w.AddTensor(name, t, t.dim() == 1 ? GgufTensorType.F32 : type);
        void Norm(string name, string key) => w.AddTensor(name, hf[key] + 1, GgufTensorType.F32);
        Add("token_embd.weight", hf["model.embed_tokens.weight"]);
        for (int n = 0; n < s.Layers; n++)
        {
            string p = $"model.layers.{n}.", g = $"blk.{n}.";
            Norm(g + "attn_norm.weight", p + "input_layernorm.weight");
            Add(g + "attn_q.weight", hf[p + "self_attn.q_proj.weight"]);
            Add(g + "attn_k.weight", hf[p + "self_attn.k_proj.weight"]);
            Add(g + "attn_v.weight", hf[p + "self_attn.v_proj.weight"]);
            Add(g + "attn_output.weight", hf[p + "self_attn.o_proj.weight"]);
            Norm(g + "ffn_norm.weight", p + "post_attention_layernorm.weight");
            Add(g + "ffn_gate.weight", hf[p + "mlp.gate_proj.weight"]);
            Add(g + "ffn_up.weight", hf[p + "mlp.up_proj.weight"]);
            Add(g + "ffn_down.weight", hf[p + "mlp.down_proj.weight"]);
        }
        Norm("output_norm.weight", "model.norm.weight");
        w.Save(path);
    }
}
