using System.Text.Json.Nodes;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Decoders.Gguf;
using static SharpTune.Models.Decoders.Gguf.GgufKeyType;

namespace SharpTune.Models.Decoders.Gpt2;

/// <summary>
/// GPT-2's GGUF form, both ways: fused c_attn, Conv1D weights stored [in, out] by Hugging Face and in the Linear layout
/// [out, in] by GGUF (<see cref="GgufTensorTransform.Transposed"/>); the head is tied to wte (a GGUF <c>output.weight</c>,
/// which the converter writes as a copy of token_embd, is not read).
/// </summary>
public sealed class Gpt2Gguf : IGgufTable
{
    public string Architecture => "gpt2";

    static readonly GgufKey<Gpt2Config>[] Keys =
    [
        new("context_length", "n_positions", Size, c => c.NPositions),
        new("embedding_length", "n_embd", Size, c => c.NEmbd),
        new("block_count", "n_layer", Size, c => c.NLayer),
        new("feed_forward_length", "n_inner", Size, c => c.InnerSize),
        new("attention.head_count", "n_head", Size, c => c.NHead),
        new("attention.layer_norm_epsilon", "layer_norm_epsilon", Float, c => c.LayerNormEpsilon),
    ];

    public JsonObject ReadConfig(GgufFile f)
    {
        var config = new JsonObject
        {
            ["model_type"] = "gpt2",
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["activation_function"] = "gelu_new",
            ["tie_word_embeddings"] = true,
        };
        Keys.Read(f, Architecture, config);
        config["n_ctx"] = config["n_positions"]!.DeepClone();
        config["vocab_size"] = GgufTables.Vocab(f, Architecture);
        GgufTables.AddTokenIds(f, config);
        return config;
    }

    public IReadOnlyList<KeyValuePair<string, object>> Metadata(IDecoderConfig config) => Keys.Write(Typed(config), Architecture);

    public IReadOnlyList<(string Name, float[] Values)> ExtraTensors(IDecoderConfig config) => [];

    public IReadOnlyList<GgufTensorMapping> Tensors(IDecoderConfig config)
    {
        var c = Typed(config);
        long e = c.NEmbd, ffn = c.InnerSize;
        var tr = GgufTensorTransform.Transposed;
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
        return t;
    }

    static Gpt2Config Typed(IDecoderConfig config) => config as Gpt2Config
        ?? throw new ArgumentException($"the gpt2 GGUF table takes a {nameof(Gpt2Config)}, not a {config.GetType().Name}");
}
