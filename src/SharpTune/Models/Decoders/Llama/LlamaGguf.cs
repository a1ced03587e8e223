using System.Text.Json.Nodes;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Decoders.Gguf;
using static SharpTune.Models.Decoders.Gguf.GgufKeyType;

namespace SharpTune.Models.Decoders.Llama;

/// <summary>
/// The GGUF form of the Llama layout, both ways (llama.cpp's <c>convert_hf_to_gguf.py</c> and its inverse): tensor names
/// <c>token_embd</c>, <c>blk.N.attn_{norm,q,k,v,output}</c>, <c>blk.N.ffn_{norm,gate,up,down}</c>, <c>output_norm</c>,
/// <c>output</c> (absent when tied). Families of this layout (Llama, Qwen2, Gemma) differ only in the arguments: the
/// architecture name, the config fields GGUF does not carry, llama's q/k row permutation and Gemma's norm offset.
/// </summary>
/// <param name="architecture"><c>general.architecture</c>.</param>
/// <param name="fields">Config fields a file of this architecture implies (model_type, architectures, the activation).</param>
/// <param name="queryKeyRows">How q/k rows are stored: <see cref="GgufTensorTransform.PermutedRows"/> for llama (llama.cpp
/// rotates adjacent pairs for it), none where llama.cpp rotates halves as Hugging Face does (qwen2, gemma).</param>
/// <param name="norms">How norm weights are stored (<see cref="GgufTensorTransform.PlusOne"/> for Gemma).</param>
/// <param name="alwaysHeadDim">Write <c>attention.key_length</c>/<c>value_length</c> even when head_dim is hidden / heads.</param>
public sealed class LlamaGguf(string architecture, JsonObject fields, GgufTensorTransform queryKeyRows,
    GgufTensorTransform norms = GgufTensorTransform.None, bool alwaysHeadDim = false) : IGgufTable
{
    public string Architecture => architecture;

    /// <summary>The metadata keys, in the converter's order, with the config fields they carry.</summary>
    IEnumerable<GgufKey<LlamaConfig>> Keys()
    {
        double? HeadDim(LlamaConfig c) => alwaysHeadDim || c.HeadDim * c.NumAttentionHeads != c.HiddenSize ? c.HeadDim : null;
        yield return new("context_length", "max_position_embeddings", Size, c => c.MaxPositionEmbeddings);
        yield return new("embedding_length", "hidden_size", Size, c => c.HiddenSize);
        yield return new("block_count", "num_hidden_layers", Size, c => c.NumHiddenLayers);
        yield return new("feed_forward_length", "intermediate_size", Size, c => c.IntermediateSize);
        yield return new("attention.head_count", "num_attention_heads", Size, c => c.NumAttentionHeads);
        yield return new("attention.head_count_kv", "num_key_value_heads", Size, c => c.KeyValueHeads, Required: false);
        yield return new("attention.key_length", "head_dim", Size, HeadDim, Required: false);
        yield return new("attention.value_length", null, Size, HeadDim);
        yield return new("attention.layer_norm_rms_epsilon", "rms_norm_eps", Float, c => c.RmsNormEps);
        yield return new("rope.freq_base", "rope_theta", Float, c => c.Theta, Required: false, Default: 10000.0);
        yield return new("rope.dimension_count", null, Size, c => c.HeadDim);
        yield return new("vocab_size", null, Size, c => c.VocabSize); // read by GgufTables.Vocab, which falls back on the tokenizer
    }

    public JsonObject ReadConfig(GgufFile f)
    {
        var config = (JsonObject)fields.DeepClone();
        Keys().Read(f, architecture, config);
        config["vocab_size"] = GgufTables.Vocab(f, architecture);
        config["tie_word_embeddings"] = !f.HasTensor("output.weight");
        config["attention_bias"] = f.HasTensor("blk.0.attn_q.bias");
        if (f.HasTensor("blk.0.ffn_gate.bias")) config["mlp_bias"] = true;
        if (GgufRopeScaling.Read(f, architecture) is { } scaling) config["rope_scaling"] = scaling;
        GgufTables.AddTokenIds(f, config);
        return config;
    }

    public IReadOnlyList<KeyValuePair<string, object>> Metadata(IDecoderConfig config)
    {
        var c = Typed(config);
        return [.. Keys().Write(c, architecture), .. GgufRopeScaling.Keys(c.Scaling, architecture)];
    }

    public IReadOnlyList<(string Name, float[] Values)> ExtraTensors(IDecoderConfig config)
    {
        var c = Typed(config);
        return GgufRopeScaling.Tensors(c.Scaling, c.HeadDim, c.Theta);
    }

    public IReadOnlyList<GgufTensorMapping> Tensors(IDecoderConfig config)
    {
        var c = Typed(config);
        long hidden = c.HiddenSize, q = c.NumAttentionHeads * c.HeadDim, k = c.KeyValueHeads * c.HeadDim, ffn = c.IntermediateSize;
        var t = new List<GgufTensorMapping> { new("model.embed_tokens.weight", "token_embd.weight", [c.VocabSize, hidden]) };
        for (int n = 0; n < c.NumHiddenLayers; n++)
        {
            string hf = $"model.layers.{n}.", g = $"blk.{n}.";
            t.Add(new(hf + "input_layernorm.weight", g + "attn_norm.weight", [hidden], norms));
            t.Add(new(hf + "self_attn.q_proj.weight", g + "attn_q.weight", [q, hidden], queryKeyRows, c.NumAttentionHeads));
            t.Add(new(hf + "self_attn.k_proj.weight", g + "attn_k.weight", [k, hidden], queryKeyRows, c.KeyValueHeads));
            t.Add(new(hf + "self_attn.v_proj.weight", g + "attn_v.weight", [k, hidden]));
            if (c.QkvBias)
            {
                t.Add(new(hf + "self_attn.q_proj.bias", g + "attn_q.bias", [q], queryKeyRows, c.NumAttentionHeads));
                t.Add(new(hf + "self_attn.k_proj.bias", g + "attn_k.bias", [k], queryKeyRows, c.KeyValueHeads));
                t.Add(new(hf + "self_attn.v_proj.bias", g + "attn_v.bias", [k]));
            }
            t.Add(new(hf + "self_attn.o_proj.weight", g + "attn_output.weight", [hidden, q]));
            if (c.OutputBias) t.Add(new(hf + "self_attn.o_proj.bias", g + "attn_output.bias", [hidden]));
            t.Add(new(hf + "post_attention_layernorm.weight", g + "ffn_norm.weight", [hidden], norms));
            foreach (var (proj, name, shape) in new[] { ("gate_proj", "ffn_gate", new[] { ffn, hidden }), ("up_proj", "ffn_up", [ffn, hidden]), ("down_proj", "ffn_down", [hidden, ffn]) })
            {
                t.Add(new($"{hf}mlp.{proj}.weight", $"{g}{name}.weight", shape));
                if (c.MlpBias) t.Add(new($"{hf}mlp.{proj}.bias", $"{g}{name}.bias", [shape[0]]));
            }
        }
        t.Add(new("model.norm.weight", "output_norm.weight", [hidden], norms));
        if (!c.TieWordEmbeddings) t.Add(new("lm_head.weight", "output.weight", [c.VocabSize, hidden]));
        return t;
    }

    LlamaConfig Typed(IDecoderConfig config) => config as LlamaConfig
        ?? throw new ArgumentException($"the {architecture} GGUF table takes a {nameof(LlamaConfig)}, not a {config.GetType().Name}");
}
