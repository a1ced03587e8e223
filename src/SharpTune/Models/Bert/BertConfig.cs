using SharpTune.Models.Common;
using SharpTune.Models;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SharpTune.Models.Bert;

/// <summary>
/// The configuration of a BERT encoder. Property names follow Hugging Face's <c>config.json</c>, so a
/// file written by transformers loads unchanged and one written here loads in transformers.
/// </summary>
public sealed record BertConfig : IBackboneShape
{
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 30522;
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 768;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 12;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 12;
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 3072;
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "gelu";
    [JsonPropertyName("hidden_dropout_prob")] public double HiddenDropoutProb { get; init; } = 0.1;
    [JsonPropertyName("attention_probs_dropout_prob")] public double AttentionProbsDropoutProb { get; init; } = 0.1;
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 512;
    [JsonPropertyName("type_vocab_size")] public int TypeVocabSize { get; init; } = 2;
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; init; } = 1e-12;
    [JsonPropertyName("pad_token_id")] public int PadTokenId { get; init; }
    [JsonPropertyName("position_embedding_type")] public string PositionEmbeddingType { get; init; } = "absolute";
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "bert";
    [JsonPropertyName("architectures")] public IReadOnlyList<string>? Architectures { get; init; }

    /// <summary>Task-head fields that transformers reads from the same file; kept so a saved model round-trips.</summary>
    [JsonPropertyName("id2label")] public IReadOnlyDictionary<string, string>? Id2Label { get; init; }
    [JsonPropertyName("label2id")] public IReadOnlyDictionary<string, int>? Label2Id { get; init; }
    [JsonPropertyName("problem_type")] public string? ProblemType { get; init; }

    /// <summary>Fields of the file this record does not model; written back unchanged on save.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; init; }

    /// <summary>
    /// Mixed precision: attention runs in bf16, as do the matrix products, GELU and dropout between them (the
    /// residual adds, LayerNorm and the loss stay fp32). Not part of
    /// the saved config; chosen per run. Linear layers get bf16 through <see cref="LinearFactories.Bf16"/>.
    /// </summary>
    [JsonIgnore] public bool Bf16 { get; init; }

    /// <summary>Size of one attention head.</summary>
    [JsonIgnore] public int HeadSize => HiddenSize / NumAttentionHeads;

    // What parameter-efficient methods see (explicit, so none of it is written to config.json).
    string IBackboneShape.Family => "bert";
    int IBackboneShape.LayerCount => NumHiddenLayers;
    int IBackboneShape.AttentionHeads => NumAttentionHeads;
    int IBackboneShape.KeyValueHeadCount => NumAttentionHeads;
    int IBackboneShape.MaxPositions => MaxPositionEmbeddings;
    int IBackboneShape.Vocabulary => VocabSize;
    IReadOnlyList<LinearSite> IBackboneShape.LinearSites => BertLinears.Sites(this);
    BackboneNames IBackboneShape.Names => Names;
    bool IBackboneShape.PrefixTakesPositions => false;
    int IBackboneShape.LearnedPositions => MaxPositionEmbeddings;
    bool IBackboneShape.NormsHaveBias => true;
    bool IBackboneShape.AttentionScoresHeld => true;

    /// <summary>
    /// BERT inside a transformers task model (<c>bert.*</c>) and PEFT's defaults for it. Encoders of other
    /// model types (roberta, electra, ...) are loaded into the same modules under the same names.
    /// </summary>
    static readonly BackboneNames Names = new(
        PeftPrefix: "bert.", ParameterPrefix: "bert.", EmbeddingPrefixes: ["bert.embeddings."], LayerPrefix: "bert.encoder.layer.",
        LoraTargets: ["query", "value"], Ia3Targets: ["key", "value", "output.dense"], Ia3FeedForward: ["output.dense"])
    {
        TargetNote = "output.dense names both attention.output.dense and the feed-forward one, as in PEFT",
    };

    static readonly JsonSerializerOptions WriteOptions = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>Reads and validates a Hugging Face <c>config.json</c>.</summary>
    public static BertConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Model configuration not found: {path}", path);
        BertConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<BertConfig>(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid config.json ({e.Message})", e);
        }
        if (config is null) throw new InvalidDataException($"{path}: config.json is empty");
        config.Validate(path);
        return config;
    }

    public string ToJson() => JsonSerializer.Serialize(this, WriteOptions);

    public void Save(string path) => File.WriteAllText(path, ToJson() + "\n");

    /// <summary>Throws <see cref="InvalidDataException"/> naming the first field that is out of range.</summary>
    public BertConfig Validate(string source = "config")
    {
        void Positive(int value, string field)
        {
            if (value <= 0) throw new InvalidDataException($"{source}: {field} must be positive, got {value}");
        }
        void Probability(double value, string field)
        {
            if (!(value >= 0 && value < 1)) throw new InvalidDataException($"{source}: {field} must be in [0, 1), got {value}");
        }
        if (ModelType is not ("bert" or "roberta" or "xlm-roberta" or "distilbert" or "electra"))
            throw new InvalidDataException($"{source}: model_type '{ModelType}' is not a BERT-family encoder");
        Positive(VocabSize, "vocab_size");
        Positive(HiddenSize, "hidden_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(IntermediateSize, "intermediate_size");
        Positive(MaxPositionEmbeddings, "max_position_embeddings");
        Positive(TypeVocabSize, "type_vocab_size");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new InvalidDataException($"{source}: hidden_size ({HiddenSize}) must be a multiple of num_attention_heads ({NumAttentionHeads})");
        Probability(HiddenDropoutProb, "hidden_dropout_prob");
        Probability(AttentionProbsDropoutProb, "attention_probs_dropout_prob");
        if (!(LayerNormEps > 0)) throw new InvalidDataException($"{source}: layer_norm_eps must be positive, got {LayerNormEps}");
        if (PadTokenId < 0 || PadTokenId >= VocabSize)
            throw new InvalidDataException($"{source}: pad_token_id {PadTokenId} is outside the vocabulary (size {VocabSize})");
        if (HiddenAct is not ("gelu" or "gelu_new" or "gelu_pytorch_tanh" or "relu" or "silu" or "swish" or "tanh"))
            throw new InvalidDataException($"{source}: hidden_act '{HiddenAct}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu, tanh)");
        if (PositionEmbeddingType != "absolute")
            throw new InvalidDataException($"{source}: position_embedding_type '{PositionEmbeddingType}' is not supported (only 'absolute')");
        return this;
    }
}
