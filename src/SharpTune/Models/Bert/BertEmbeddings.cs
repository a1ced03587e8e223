using SharpTune.Models.Common;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>
/// Word + position + token-type embeddings, then LayerNorm and dropout. Follows HF <c>BertEmbeddings</c>;
/// field names are the state-dict keys (<c>embeddings.word_embeddings.weight</c>, ...).
/// </summary>
public sealed class BertEmbeddings : nn.Module
{
    readonly Embedding word_embeddings;
    readonly Embedding position_embeddings;
    readonly Embedding token_type_embeddings;
    readonly LayerNorm LayerNorm;
    readonly FastDropoutModule dropout;
    readonly int maxPositions;

    public BertEmbeddings(BertConfig config) : base(nameof(BertEmbeddings))
    {
        word_embeddings = nn.Embedding(config.VocabSize, config.HiddenSize, padding_idx: config.PadTokenId);
        position_embeddings = nn.Embedding(config.MaxPositionEmbeddings, config.HiddenSize);
        token_type_embeddings = nn.Embedding(config.TypeVocabSize, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps);
        dropout = new FastDropoutModule(config.HiddenDropoutProb);
        maxPositions = config.MaxPositionEmbeddings;
        RegisterComponents();
    }

    /// <summary>The token embedding table (V, H), for prompt initialisation from vocabulary rows or text.</summary>
    public Embedding WordEmbeddings => word_embeddings;

    /// <summary>Looks up token ids (B, T) → (B, T, H).</summary>
    public Tensor EmbedTokens(Tensor inputIds) => word_embeddings.forward(inputIds);

    /// <summary>
    /// Embeds the sequence. Give either <paramref name="inputIds"/> (B, T) or <paramref name="inputsEmbeds"/>
    /// (B, T, H): input-side prompts pass embeddings with the virtual tokens already in front, and then
    /// positions and token types cover all of them (METHODS.md).
    /// </summary>
    public Tensor forward(Tensor? inputIds, Tensor? tokenTypeIds, Tensor? inputsEmbeds)
    {
        using var scope = NewDisposeScope();
        var embeds = inputsEmbeds ?? word_embeddings.forward(inputIds ?? throw new ArgumentException("Either input ids or input embeddings are required."));
        long batch = embeds.shape[0], length = embeds.shape[1];
        if (length > maxPositions)
            throw new ArgumentException($"Sequence of {length} positions exceeds max_position_embeddings ({maxPositions}).");
        var positions = arange(length, dtype: ScalarType.Int64, device: embeds.device).unsqueeze(0); // (1, T)
        var types = tokenTypeIds ?? zeros(batch, length, ScalarType.Int64, embeds.device);
        var hidden = embeds + position_embeddings.forward(positions) + token_type_embeddings.forward(types); // (B, T, H)
        return dropout.forward(LayerNorm.forward(hidden)).MoveToOuterDisposeScope();
    }
}
