using System.Text.Json.Nodes;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Decoders.Gpt2;
using SharpTune.Models.Decoders.Llama;
using SharpTune.Models.Decoders.Qwen2;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>
/// How a decoder is laid out in a GGUF file llama.cpp runs, as llama.cpp's <c>convert_hf_to_gguf.py</c> writes it: the
/// architecture's metadata (the reverse of what <see cref="GgufModelMap"/> reads) and, for every Hugging Face key, its
/// GGUF tensor name and the transform from Hugging Face's layout (<see cref="GgufTensorMapping"/>, whose transform
/// names the reading direction: a <see cref="GgufTensorTransform.Transpose"/> is undone by transposing, an
/// <see cref="GgufTensorTransform.UnpermuteRows"/> by llama.cpp's permutation).
/// </summary>
sealed class GgufDecoderLayout
{
    GgufDecoderLayout(string architecture, List<KeyValuePair<string, object>> metadata, List<GgufTensorMapping> tensors,
        List<(string Name, float[] Values)> extras)
    {
        Architecture = architecture;
        Metadata = metadata;
        Tensors = tensors;
        ByHfKey = tensors.ToDictionary(t => t.HfKey);
        Extras = extras;
    }

    /// <summary><c>general.architecture</c>: llama, qwen2 or gpt2.</summary>
    public string Architecture { get; }

    /// <summary>The <c>{arch}.*</c> keys, typed as llama.cpp reads them (u32 sizes, f32 epsilons and bases).</summary>
    public IReadOnlyList<KeyValuePair<string, object>> Metadata { get; }

    /// <summary>Every weight of the plain model, in the converter's order.</summary>
    public IReadOnlyList<GgufTensorMapping> Tensors { get; }

    public IReadOnlyDictionary<string, GgufTensorMapping> ByHfKey { get; }

    /// <summary>Tensors llama.cpp wants that the model holds as settings (Llama 3's <c>rope_freqs.weight</c>), always F32.</summary>
    public IReadOnlyList<(string Name, float[] Values)> Extras { get; }

    /// <summary>The layout of <paramref name="model"/>'s family, from its config; an unsupported family or setting is refused by name.</summary>
    public static GgufDecoderLayout For(ICausalLanguageModel model)
    {
        JsonObject json = model.ToConfigJson();
        var config = DecoderFamilies.ForConfig(json, "model config").ParseConfig(json, "model config");
        return config switch
        {
            LlamaConfig llama => Llama(llama),
            Gpt2Config gpt2 => Gpt2(gpt2),
            _ => throw new NotSupportedException($"a {config.GetType().Name} model has no GGUF layout here (llama, qwen2 and gpt2 have)"),
        };
    }

    /// <summary>A Hugging Face tensor in GGUF's layout (transposed or with llama's q/k rows permuted where the mapping says so).</summary>
    public static Tensor ToGguf(GgufTensorMapping mapping, Tensor hf) => mapping.Transform switch
    {
        GgufTensorTransform.Transpose => hf.t().contiguous(),
        GgufTensorTransform.UnpermuteRows => GgufPermutation.ToLlamaCpp(hf, mapping.Heads),
        _ => hf,
    };

    /// <summary>Llama, Mistral (as llama) and Qwen2: llama's q/k rows permuted, Qwen2's not (llama.cpp rotates halves for it).</summary>
    static GgufDecoderLayout Llama(LlamaConfig c)
    {
        bool qwen = c is Qwen2Config;
        string arch = qwen ? "qwen2" : "llama";
        var m = new List<KeyValuePair<string, object>>();
        void Set(string key, object value) => m.Add(new($"{arch}.{key}", value));
        Set("context_length", (uint)c.MaxPositionEmbeddings);
        Set("embedding_length", (uint)c.HiddenSize);
        Set("block_count", (uint)c.NumHiddenLayers);
        Set("feed_forward_length", (uint)c.IntermediateSize);
        Set("attention.head_count", (uint)c.NumAttentionHeads);
        Set("attention.head_count_kv", (uint)c.KeyValueHeads);
        if (c.HeadDim * c.NumAttentionHeads != c.HiddenSize)
        {
            Set("attention.key_length", (uint)c.HeadDim);
            Set("attention.value_length", (uint)c.HeadDim);
        }
        Set("attention.layer_norm_rms_epsilon", (float)c.RmsNormEps);
        Set("rope.freq_base", (float)c.Theta);
        Set("rope.dimension_count", (uint)c.HeadDim);
        Set("vocab_size", (uint)c.VocabSize);
        var extras = new List<(string, float[])>();
        switch (c.Scaling?.Kind)
        {
            case null or "default":
                break;
            case "linear":
                Set("rope.scaling.type", "linear");
                Set("rope.scaling.factor", (float)c.Scaling.Factor!.Value);
                break;
            case "llama3":
                // As the converter: no rope.scaling keys but one factor per frequency, base / scaled (llama.cpp divides by it).
                var unscaled = RotaryEmbedding.InverseFrequencies(c.HeadDim, c.Theta, null);
                var scaled = RotaryEmbedding.InverseFrequencies(c.HeadDim, c.Theta, c.Scaling);
                extras.Add(("rope_freqs.weight", unscaled.Zip(scaled, (u, s) => (float)(u / s)).ToArray()));
                break;
            default:
                throw new NotSupportedException($"rope_scaling '{c.Scaling.Kind}' has no GGUF form here (linear and llama3 have)");
        }

        long hidden = c.HiddenSize, q = c.NumAttentionHeads * c.HeadDim, k = c.KeyValueHeads * c.HeadDim, ffn = c.IntermediateSize;
        var permute = qwen ? GgufTensorTransform.None : GgufTensorTransform.UnpermuteRows;
        var t = new List<GgufTensorMapping> { new("model.embed_tokens.weight", "token_embd.weight", [c.VocabSize, hidden]) };
        for (int n = 0; n < c.NumHiddenLayers; n++)
        {
            string hf = $"model.layers.{n}.", g = $"blk.{n}.";
            t.Add(new(hf + "input_layernorm.weight", g + "attn_norm.weight", [hidden]));
            t.Add(new(hf + "self_attn.q_proj.weight", g + "attn_q.weight", [q, hidden], permute, c.NumAttentionHeads));
            t.Add(new(hf + "self_attn.k_proj.weight", g + "attn_k.weight", [k, hidden], permute, c.KeyValueHeads));
            t.Add(new(hf + "self_attn.v_proj.weight", g + "attn_v.weight", [k, hidden]));
            if (c.QkvBias)
            {
                t.Add(new(hf + "self_attn.q_proj.bias", g + "attn_q.bias", [q], permute, c.NumAttentionHeads));
                t.Add(new(hf + "self_attn.k_proj.bias", g + "attn_k.bias", [k], permute, c.KeyValueHeads));
                t.Add(new(hf + "self_attn.v_proj.bias", g + "attn_v.bias", [k]));
            }
            t.Add(new(hf + "self_attn.o_proj.weight", g + "attn_output.weight", [hidden, q]));
            if (c.OutputBias) t.Add(new(hf + "self_attn.o_proj.bias", g + "attn_output.bias", [hidden]));
            t.Add(new(hf + "post_attention_layernorm.weight", g + "ffn_norm.weight", [hidden]));
            foreach (var (proj, name, shape) in new[] { ("gate_proj", "ffn_gate", new[] { ffn, hidden }), ("up_proj", "ffn_up", [ffn, hidden]), ("down_proj", "ffn_down", [hidden, ffn]) })
            {
                t.Add(new($"{hf}mlp.{proj}.weight", $"{g}{name}.weight", shape));
                if (c.MlpBias) t.Add(new($"{hf}mlp.{proj}.bias", $"{g}{name}.bias", [shape[0]]));
            }
        }
        t.Add(new("model.norm.weight", "output_norm.weight", [hidden]));
        if (!c.TieWordEmbeddings) t.Add(new("lm_head.weight", "output.weight", [c.VocabSize, hidden]));
        return new GgufDecoderLayout(arch, m, t, extras);
    }

    /// <summary>GPT-2: Conv1D weights are stored [in, out] by Hugging Face and [out, in] (the Linear layout) in GGUF.</summary>
    static GgufDecoderLayout Gpt2(Gpt2Config c)
    {
        var m = new List<KeyValuePair<string, object>>
        {
            new("gpt2.context_length", (uint)c.NPositions),
            new("gpt2.embedding_length", (uint)c.NEmbd),
            new("gpt2.block_count", (uint)c.NLayer),
            new("gpt2.feed_forward_length", (uint)c.InnerSize),
            new("gpt2.attention.head_count", (uint)c.NHead),
            new("gpt2.attention.layer_norm_epsilon", (float)c.LayerNormEpsilon),
        };
        long e = c.NEmbd, ffn = c.InnerSize;
        var tr = GgufTensorTransform.Transpose;
        var t = new List<GgufTensorMapping>
        {
            new("transformer.wte.weight", "token_embd.weight", [c.VocabSize, e]),
            new("transformer.wpe.weight", "position_embd.weight", [c.NPositions, e]),
        };
        for (int n = 0; n < c.NLayer; n++)
        {
            string hf = $"transformer.h.{n}.", g = $"blk.{n}.";
            t.Add(new(hf + "ln_1.weight", g + "attn_norm.weight", [e]));
            t.Add(new(hf + "ln_1.bias", g + "attn_norm.bias", [e]));
            t.Add(new(hf + "attn.c_attn.weight", g + "attn_qkv.weight", [e, 3 * e], tr));
            t.Add(new(hf + "attn.c_attn.bias", g + "attn_qkv.bias", [3 * e]));
            t.Add(new(hf + "attn.c_proj.weight", g + "attn_output.weight", [e, e], tr));
            t.Add(new(hf + "attn.c_proj.bias", g + "attn_output.bias", [e]));
            t.Add(new(hf + "ln_2.weight", g + "ffn_norm.weight", [e]));
            t.Add(new(hf + "ln_2.bias", g + "ffn_norm.bias", [e]));
            t.Add(new(hf + "mlp.c_fc.weight", g + "ffn_up.weight", [e, ffn], tr));
            t.Add(new(hf + "mlp.c_fc.bias", g + "ffn_up.bias", [ffn]));
            t.Add(new(hf + "mlp.c_proj.weight", g + "ffn_down.weight", [ffn, e], tr));
            t.Add(new(hf + "mlp.c_proj.bias", g + "ffn_down.bias", [e]));
        }
        t.Add(new("transformer.ln_f.weight", "output_norm.weight", [e]));
        t.Add(new("transformer.ln_f.bias", "output_norm.bias", [e]));
        if (!c.TieWordEmbeddings) t.Add(new("lm_head.weight", "output.weight", [c.VocabSize, e]));
        return new GgufDecoderLayout("gpt2", m, t, []);
    }
}
