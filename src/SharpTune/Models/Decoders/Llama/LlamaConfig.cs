using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using SharpTune.Models.Decoders.Common;
using static SharpTune.Models.Decoders.Common.DecoderConfigJson;

namespace SharpTune.Models.Decoders.Llama;

/// <summary>
/// The configuration of a Llama decoder (HF <c>LlamaConfig</c>; Mistral's config has the same fields, and its
/// <c>sliding_window</c> is kept but not applied: attention is full, which equals Mistral's up to the window). Property names
/// follow Hugging Face's <c>config.json</c>, so a file written by transformers loads unchanged, and fields this record
/// does not model are kept and written back. Defaults are transformers'.
/// </summary>
public record LlamaConfig : IDecoderConfig
{
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "llama";
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 32000;
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 4096;
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 11008;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 32;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 32;
    /// <summary>Key/value heads for grouped-query attention; null (absent) means as many as query heads.</summary>
    [JsonPropertyName("num_key_value_heads")] public int? NumKeyValueHeads { get; init; }
    /// <summary>Size of one head; null means hidden_size / num_attention_heads.</summary>
    [JsonPropertyName("head_dim")] public int? HeadDimension { get; init; }
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "silu";
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 2048;
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-6;
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 10000;
    [JsonPropertyName("rope_scaling")] public RopeScaling? RopeScaling { get; init; }
    /// <summary>Transformers 5's form of <c>rope_theta</c> and <c>rope_scaling</c> in one object.</summary>
    [JsonPropertyName("rope_parameters")] public RopeScaling? RopeParameters { get; init; }
    [JsonPropertyName("attention_bias")] public bool AttentionBias { get; init; }
    [JsonPropertyName("attention_dropout")] public double AttentionDropout { get; init; }
    [JsonPropertyName("mlp_bias")] public bool MlpBias { get; init; }
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; }
    [JsonPropertyName("bos_token_id")] public JsonNode? BosTokenId { get; init; }
    /// <summary>A token id or, as in Llama 3, a list of them.</summary>
    [JsonPropertyName("eos_token_id")] public JsonNode? EosTokenId { get; init; }
    [JsonPropertyName("pad_token_id")] public JsonNode? PadTokenId { get; init; }
    [JsonPropertyName("architectures")] public IReadOnlyList<string>? Architectures { get; init; }

    /// <summary>Fields of the file this record does not model; written back unchanged on save.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; init; }

    [JsonIgnore] public int KeyValueHeads => NumKeyValueHeads ?? NumAttentionHeads;
    [JsonIgnore] public int HeadDim => HeadDimension ?? HiddenSize / NumAttentionHeads;

    /// <summary>The rotary base: <c>rope_parameters.rope_theta</c> where given, else <c>rope_theta</c>.</summary>
    [JsonIgnore] public double Theta => RopeParameters?.RopeTheta ?? RopeTheta;

    /// <summary>The rotary scaling: <c>rope_scaling</c>, else <c>rope_parameters</c>, null when neither scales.</summary>
    [JsonIgnore] public RopeScaling? Scaling => RopeScaling ?? (RopeParameters is { Kind: not "default" } p ? p : null);

    /// <summary>The gated MLP's activation (a key of <see cref="GatedMlp.Activations"/>): <c>hidden_act</c> here.</summary>
    [JsonIgnore] public virtual string MlpActivation => HiddenAct;

    /// <summary>Whether norm weights are offsets from one (x·(1 + w), Gemma); false here (x·w).</summary>
    [JsonIgnore] public virtual bool NormWeightsFromOne => false;

    /// <summary>The factor token embeddings are multiplied by before the first block (Gemma: √hidden_size); none here.</summary>
    [JsonIgnore] public virtual double? EmbeddingScale => null;

    /// <summary>Whether the q/k/v projections have biases: <c>attention_bias</c> here; always in Qwen2.</summary>
    [JsonIgnore] public virtual bool QkvBias => AttentionBias;

    /// <summary>Whether the output projection has a bias: <c>attention_bias</c> here; never in Qwen2.</summary>
    [JsonIgnore] public virtual bool OutputBias => AttentionBias;

    [JsonIgnore] public IReadOnlyList<int> BosTokenIds => TokenIds(BosTokenId, "config", "bos_token_id");
    [JsonIgnore] public IReadOnlyList<int> EosTokenIds => TokenIds(EosTokenId, "config", "eos_token_id");

    [JsonIgnore]
    public DecoderInfo Info => new(Family, NumHiddenLayers, HiddenSize, NumAttentionHeads, KeyValueHeads, HeadDim,
        IntermediateSize, VocabSize, MaxPositionEmbeddings, TieWordEmbeddings);

    /// <summary>The attention block's sizes for the shared modules.</summary>
    [JsonIgnore] public AttentionShape Attention => new(HiddenSize, NumAttentionHeads, KeyValueHeads, HeadDim, QkvBias, OutputBias, AttentionDropout);

    // What parameter-efficient methods see (explicit, so none of it is written to config.json).
    string IBackboneShape.Family => Family;
    int IBackboneShape.HiddenSize => HiddenSize;
    int IBackboneShape.LayerCount => NumHiddenLayers;
    int IBackboneShape.AttentionHeads => NumAttentionHeads;
    int IBackboneShape.KeyValueHeadCount => KeyValueHeads;
    int IBackboneShape.HeadSize => HeadDim;
    int IBackboneShape.MaxPositions => MaxPositionEmbeddings;
    int IBackboneShape.Vocabulary => VocabSize;
    IReadOnlyList<LinearSite> IBackboneShape.LinearSites =>
        Enumerable.Range(0, NumHiddenLayers).SelectMany(i => DecoderLinears.LlamaLayer($"model.layers.{i}", Attention, IntermediateSize, MlpBias)).ToList();
    BackboneNames IBackboneShape.Names => LlamaNames;

    /// <summary>Llama-layout names; PEFT's default targets for llama, mistral and qwen2 are the same.</summary>
    static readonly BackboneNames LlamaNames = new(
        PeftPrefix: "", ParameterPrefix: "", EmbeddingPrefixes: ["model.embed_tokens."], LayerPrefix: "model.layers.",
        LoraTargets: ["q_proj", "v_proj"], Ia3Targets: ["k_proj", "v_proj", "down_proj"], Ia3FeedForward: ["down_proj"]);

    /// <summary>The family this record builds, as the registry names it for <c>model_type</c> (Mistral's layout is Llama's, as in llama.cpp).</summary>
    [JsonIgnore] string Family => DecoderFamilies.Of(this).Name;

    /// <summary>Throws <see cref="InvalidDataException"/> naming the first field that is out of range.</summary>
    public virtual void Validate(string source)
    {
        DecoderFamilies.Of(this, source);
        Positive(source, "vocab_size", VocabSize);
        Positive(source, "hidden_size", HiddenSize);
        Positive(source, "intermediate_size", IntermediateSize);
        Positive(source, "num_hidden_layers", NumHiddenLayers);
        Positive(source, "num_attention_heads", NumAttentionHeads);
        Positive(source, "num_key_value_heads", KeyValueHeads);
        Positive(source, "max_position_embeddings", MaxPositionEmbeddings);
        Positive(source, "rms_norm_eps", RmsNormEps);
        Positive(source, "rope_theta", RopeTheta);
        Positive(source, "initializer_range", InitializerRange);
        Probability(source, "attention_dropout", AttentionDropout);
        if (HeadDimension is null && HiddenSize % NumAttentionHeads != 0)
            throw new InvalidDataException($"{source}: hidden_size ({HiddenSize}) must be a multiple of num_attention_heads ({NumAttentionHeads}) unless head_dim is given");
        Positive(source, "head_dim", HeadDim);
        if (HeadDim % 2 != 0) throw new InvalidDataException($"{source}: head_dim ({HeadDim}) must be even for rotary embeddings");
        if (NumAttentionHeads % KeyValueHeads != 0)
            throw new InvalidDataException($"{source}: num_attention_heads ({NumAttentionHeads}) must be a multiple of num_key_value_heads ({KeyValueHeads})");
        ValidateActivation(source);
        RopeScaling?.Validate(source);
        RopeParameters?.Validate(source, "rope_parameters");
        foreach (var (field, node) in new[] { ("bos_token_id", BosTokenId), ("eos_token_id", EosTokenId) })
            foreach (int id in TokenIds(node, source, field))
                if (id < 0 || id >= VocabSize)
                    throw new InvalidDataException($"{source}: {field} {id} is outside the vocabulary (vocab_size {VocabSize})");
    }

    /// <summary>Throws unless the MLP's activation is one this family computes (silu: llama.cpp's llama and qwen2 take no other).</summary>
    protected virtual void ValidateActivation(string source)
    {
        if (HiddenAct is not ("silu" or "swish"))
            throw new InvalidDataException($"{source}: hidden_act '{HiddenAct}' is not supported (silu)");
    }
}
