using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders;

/// <summary>
/// Independent float64 re-implementations of HF's LlamaForCausalLM / Qwen2ForCausalLM and GPT2LMHeadModel forward
/// passes for one unpadded sequence, written from the papers' and transformers' formulas with explicit per-head loops,
/// an explicit softmax and explicit rotary pairs, reading only the state dict. They share no code with the modules.
/// </summary>
static class ReferenceDecoders
{
    static Tensor Softmax(Tensor scores)
    {
        var shifted = scores - scores.max(-1, keepdim: true).values;
        var e = shifted.exp();
        return e / e.sum(-1, keepdim: true);
    }

    static Tensor CausalScores(Tensor q, Tensor k)
    {
        long t = q.shape[0];
        var scores = q.matmul(k.t()) / Math.Sqrt(q.shape[1]);                   // (T, T)
        var future = ones(t, t, ScalarType.Bool).triu(1);
        return scores.masked_fill(future, double.NegativeInfinity);
    }

    /// <summary>Logits (T, V) of a Llama-layout model (Llama, Qwen2).</summary>
    public static Tensor Llama(IReadOnlyDictionary<string, Tensor> sd, long[] ids, int layers, int heads, int kvHeads, int headDim,
        double eps, double[] inverseFrequencies, bool tied)
    {
        Tensor W(string key) => sd[key].to(ScalarType.Float64);
        Tensor Linear(Tensor x, string prefix) =>
            sd.ContainsKey(prefix + ".bias") ? x.matmul(W(prefix + ".weight").t()) + W(prefix + ".bias") : x.matmul(W(prefix + ".weight").t());
        Tensor Rms(Tensor x, string key) => x / (x.pow(2).mean([-1], keepdim: true) + eps).sqrt() * W(key);
        long t = ids.Length;
        int half = headDim / 2;
        var angles = arange(t, dtype: ScalarType.Float64).unsqueeze(1) * tensor(inverseFrequencies).unsqueeze(0); // (T, D/2)
        var (cos, sin) = (angles.cos(), angles.sin());
        Tensor Rotate(Tensor x) // (T, D): pairs (i, i + D/2), as HF's rotate_half
        {
            var (a, b) = (x[.., ..half], x[.., half..]);
            return cat([a * cos - b * sin, b * cos + a * sin], 1);
        }

        var hidden = W("model.embed_tokens.weight").index_select(0, tensor(ids));  // (T, H)
        for (int l = 0; l < layers; l++)
        {
            string p = $"model.layers.{l}.";
            var h = Rms(hidden, p + "input_layernorm.weight");
            var (q, k, v) = (Linear(h, p + "self_attn.q_proj"), Linear(h, p + "self_attn.k_proj"), Linear(h, p + "self_attn.v_proj"));
            var contexts = new List<Tensor>();
            for (int head = 0; head < heads; head++)
            {
                int group = head / (heads / kvHeads);
                var qh = Rotate(q[.., (head * headDim)..((head + 1) * headDim)]);
                var kh = Rotate(k[.., (group * headDim)..((group + 1) * headDim)]);
                var vh = v[.., (group * headDim)..((group + 1) * headDim)];
                contexts.Add(Softmax(CausalScores(qh, kh)).matmul(vh));
            }
            hidden = hidden + Linear(cat(contexts, 1), p + "self_attn.o_proj");
            h = Rms(hidden, p + "post_attention_layernorm.weight");
            var gate = Linear(h, p + "mlp.gate_proj");
            hidden = hidden + Linear(gate / (1 + (-gate).exp()) * Linear(h, p + "mlp.up_proj"), p + "mlp.down_proj");
        }
        hidden = Rms(hidden, "model.norm.weight");
        return hidden.matmul(W(tied ? "model.embed_tokens.weight" : "lm_head.weight").t());
    }

    /// <summary>Logits (T, V) of a GPT-2 model.</summary>
    public static Tensor Gpt2(IReadOnlyDictionary<string, Tensor> sd, long[] ids, int layers, int heads, double eps)
    {
        Tensor W(string key) => sd[key].to(ScalarType.Float64);
        Tensor Conv1D(Tensor x, string prefix) => x.matmul(W(prefix + ".weight")) + W(prefix + ".bias"); // weight (in, out)
        Tensor Norm(Tensor x, string prefix)
        {
            var centred = x - x.mean([-1], keepdim: true);
            return centred / (centred.pow(2).mean([-1], keepdim: true) + eps).sqrt() * W(prefix + ".weight") + W(prefix + ".bias");
        }
        long t = ids.Length;
        var hidden = W("transformer.wte.weight").index_select(0, tensor(ids)) + W("transformer.wpe.weight")[..(int)t];
        long width = hidden.shape[1], headDim = width / heads;
        for (int l = 0; l < layers; l++)
        {
            string p = $"transformer.h.{l}.";
            var qkv = Conv1D(Norm(hidden, p + "ln_1"), p + "attn.c_attn");              // (T, 3E)
            var contexts = new List<Tensor>();
            for (int head = 0; head < heads; head++)
            {
                Tensor Slice(long part) => qkv[.., (int)(part * width + head * headDim)..(int)(part * width + (head + 1) * headDim)];
                contexts.Add(Softmax(CausalScores(Slice(0), Slice(1))).matmul(Slice(2)));
            }
            hidden = hidden + Conv1D(cat(contexts, 1), p + "attn.c_proj");
            var inner = Conv1D(Norm(hidden, p + "ln_2"), p + "mlp.c_fc");
            var gelu = 0.5 * inner * (1 + (Math.Sqrt(2 / Math.PI) * (inner + 0.044715 * inner.pow(3))).tanh()); // gelu_new
            hidden = hidden + Conv1D(gelu, p + "mlp.c_proj");
        }
        return Norm(hidden, "transformer.ln_f").matmul(W("transformer.wte.weight").t());
    }
}
