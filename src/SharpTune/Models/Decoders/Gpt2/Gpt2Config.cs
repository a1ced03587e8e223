using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using SharpTune.Models.Decoders.Common;
using static SharpTune.Models.Decoders.Common.DecoderConfigJson;

namespace SharpTune.Models.Decoders.Gpt2;

/// <summary>
/// The configuration of a GPT-2 decoder (HF <c>GPT2Config</c>). Property names follow Hugging Face's
/// <c>config.json</c>, so a file written by transformers loads unchanged, and fields this record does not model are kept
/// and written back. Defaults are transformers' (GPT-2 small).
/// </summary>
public sealed record Gpt2Config : IDecoderConfig
{
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "gpt2";
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 50257;
    [JsonPropertyName("n_positions")] public int NPositions { get; init; } = 1024;
    [JsonPropertyName("n_embd")] public int NEmbd { get; init; } = 768;
    [JsonPropertyName("n_layer")] public int NLayer { get; init; } = 12;
    [JsonPropertyName("n_head")] public int NHead { get; init; } = 12;
    /// <summary>Feed-forward size; null means 4 · n_embd.</summary>
    [JsonPropertyName("n_inner")] public int? NInner { get; init; }
    [JsonPropertyName("activation_function")] public string ActivationFunction { get; init; } = "gelu_new";
    [JsonPropertyName("resid_pdrop")] public double ResidPdrop { get; init; } = 0.1;
    [JsonPropertyName("embd_pdrop")] public double EmbdPdrop { get; init; } = 0.1;
    [JsonPropertyName("attn_pdrop")] public double AttnPdrop { get; init; } = 0.1;
    [JsonPropertyName("layer_norm_epsilon")] public double LayerNormEpsilon { get; init; } = 1e-5;
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;
    [JsonPropertyName("scale_attn_weights")] public bool ScaleAttnWeights { get; init; } = true;
    [JsonPropertyName("scale_attn_by_inverse_layer_idx")] public bool ScaleAttnByInverseLayerIdx { get; init; }
    [JsonPropertyName("reorder_and_upcast_attn")] public bool ReorderAndUpcastAttn { get; init; }
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; } = true;
    [JsonPropertyName("bos_token_id")] public JsonNode? BosTokenId { get; init; } = 50256;
    [JsonPropertyName("eos_token_id")] public JsonNode? EosTokenId { get; init; } = 50256;
    [JsonPropertyName("architectures")] public IReadOnlyList<string>? Architectures { get; init; }

    /// <summary>Fields of the file this record does not model; written back unchanged on save.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; init; }

    [JsonIgnore] public int InnerSize => NInner ?? 4 * NEmbd;
    [JsonIgnore] public int HeadDim => NEmbd / NHead;
    [JsonIgnore] public IReadOnlyList<int> EosTokenIds => TokenIds(EosTokenId, "config", "eos_token_id");

    [JsonIgnore]
    public DecoderInfo Info => new("gpt2", NLayer, NEmbd, NHead, NHead, HeadDim, InnerSize, VocabSize, NPositions, TieWordEmbeddings);

    // What parameter-efficient methods see (explicit, so none of it is written to config.json).
    string IBackboneShape.Family => "gpt2";
    int IBackboneShape.HiddenSize => NEmbd;
    int IBackboneShape.LayerCount => NLayer;
    int IBackboneShape.AttentionHeads => NHead;
    int IBackboneShape.KeyValueHeadCount => NHead;
    int IBackboneShape.HeadSize => HeadDim;
    int IBackboneShape.MaxPositions => NPositions;
    int IBackboneShape.Vocabulary => VocabSize;
    IReadOnlyList<LinearSite> IBackboneShape.LinearSites => Enumerable.Range(0, NLayer).SelectMany(i => new LinearSite[]
    {
        new($"transformer.h.{i}.attn.c_attn", NEmbd, 3 * NEmbd, Transposed: true),
        new($"transformer.h.{i}.attn.c_proj", NEmbd, NEmbd, Transposed: true),
        new($"transformer.h.{i}.mlp.c_fc", NEmbd, InnerSize, Transposed: true),
        new($"transformer.h.{i}.mlp.c_proj", InnerSize, NEmbd, Transposed: true),
    }).ToList();
    BackboneNames IBackboneShape.Names => Names;
    int IBackboneShape.LearnedPositions => NPositions;
    bool IBackboneShape.NormsHaveBias => true;

    /// <summary>GPT-2's names and PEFT's defaults for it (LoRA on the fused c_attn with fan_in_fan_out).</summary>
    static readonly BackboneNames Names = new(
        PeftPrefix: "", ParameterPrefix: "", EmbeddingPrefixes: ["transformer.wte.", "transformer.wpe."], LayerPrefix: "transformer.h.",
        LoraTargets: ["c_attn"], Ia3Targets: ["c_attn", "mlp.c_proj"], Ia3FeedForward: ["mlp.c_proj"]);

    /// <summary>Throws <see cref="InvalidDataException"/> naming the first field that is out of range.</summary>
    public void Validate(string source)
    {
        if (ModelType != "gpt2") throw new InvalidDataException($"{source}: model_type '{ModelType}' is not one Gpt2Config reads (gpt2)");
        Positive(source, "vocab_size", VocabSize);
        Positive(source, "n_positions", NPositions);
        Positive(source, "n_embd", NEmbd);
        Positive(source, "n_layer", NLayer);
        Positive(source, "n_head", NHead);
        Positive(source, "n_inner", InnerSize);
        Positive(source, "layer_norm_epsilon", LayerNormEpsilon);
        Positive(source, "initializer_range", InitializerRange);
        Probability(source, "resid_pdrop", ResidPdrop);
        Probability(source, "embd_pdrop", EmbdPdrop);
        Probability(source, "attn_pdrop", AttnPdrop);
        if (NEmbd % NHead != 0) throw new InvalidDataException($"{source}: n_embd ({NEmbd}) must be a multiple of n_head ({NHead})");
        if (ActivationFunction is not ("gelu_new" or "gelu_pytorch_tanh"))
            throw new InvalidDataException($"{source}: activation_function '{ActivationFunction}' is not supported (gelu_new)");
        if (!ScaleAttnWeights) throw new InvalidDataException($"{source}: scale_attn_weights false is not supported");
        if (ScaleAttnByInverseLayerIdx) throw new InvalidDataException($"{source}: scale_attn_by_inverse_layer_idx true is not supported");
        if (ReorderAndUpcastAttn) throw new InvalidDataException($"{source}: reorder_and_upcast_attn true is not supported");
        foreach (var (field, node) in new[] { ("bos_token_id", BosTokenId), ("eos_token_id", EosTokenId) })
            foreach (int id in TokenIds(node, source, field))
                if (id < 0 || id >= VocabSize)
                    throw new InvalidDataException($"{source}: {field} {id} is outside the vocabulary (vocab_size {VocabSize})");
    }
}
