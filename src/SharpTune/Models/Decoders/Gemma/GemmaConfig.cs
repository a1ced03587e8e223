using System.Text.Json.Serialization;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Decoders.Llama;

namespace SharpTune.Models.Decoders.Gemma;

/// <summary>
/// The configuration of a Gemma (1) decoder (HF <c>GemmaConfig</c>): Llama's layout with a GeGLU MLP
/// (<c>hidden_activation</c>, else <c>hidden_act</c>: gelu_pytorch_tanh), RMSNorm weights stored as offsets from one,
/// token embeddings scaled by √hidden_size, a head_dim of its own (256 by default, not hidden / heads) and the head tied
/// to the embeddings. Defaults are transformers' (Gemma 7B's sizes).
/// </summary>
public sealed record GemmaConfig : LlamaConfig
{
    public GemmaConfig()
    {
        ModelType = "gemma";
        VocabSize = 256000;
        HiddenSize = 3072;
        IntermediateSize = 24576;
        NumHiddenLayers = 28;
        NumAttentionHeads = 16;
        NumKeyValueHeads = 16;
        HeadDimension = 256;
        HiddenAct = "gelu_pytorch_tanh";
        MaxPositionEmbeddings = 8192;
        TieWordEmbeddings = true;
    }

    /// <summary>The MLP's activation where the file gives it (Gemma's released configs: gelu_pytorch_tanh, with hidden_act gelu).</summary>
    [JsonPropertyName("hidden_activation")] public string? HiddenActivation { get; init; }

    /// <summary>
    /// <c>hidden_activation</c>, else <c>hidden_act</c> with its legacy "gelu" read as the tanh approximation: Gemma 1.0's
    /// released configs say "gelu" though the model was trained with the approximation, which llama.cpp computes and
    /// transformers up to 4.47 chose for them (later versions compute the exact GELU for those files).
    /// </summary>
    [JsonIgnore] public override string MlpActivation => HiddenActivation ?? (HiddenAct == "gelu" ? "gelu_pytorch_tanh" : HiddenAct);

    [JsonIgnore] public override bool NormWeightsFromOne => true;

    [JsonIgnore] public override double? EmbeddingScale => Math.Sqrt(HiddenSize);

    public override void Validate(string source)
    {
        base.Validate(source);
        if (!TieWordEmbeddings)
            throw new InvalidDataException($"{source}: tie_word_embeddings false is not supported for gemma (its head is the embedding matrix, as llama.cpp reads it)");
    }

    protected override void ValidateActivation(string source)
    {
        string field = HiddenActivation is null ? "hidden_act" : "hidden_activation";
        if (MlpActivation is not ("gelu_pytorch_tanh" or "gelu_new" or "gelu"))
            throw new InvalidDataException($"{source}: {field} '{MlpActivation}' is not supported (gelu_pytorch_tanh, gelu)");
    }
}
