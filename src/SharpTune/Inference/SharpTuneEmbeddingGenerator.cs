using Microsoft.Extensions.AI;

namespace SharpTune.Inference;

/// <summary>
/// An encoder's sentence embeddings (pooled and normalised as the model was trained, <see cref="TextEmbedder"/>) as
/// Microsoft.Extensions.AI's <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/>, in process. Calls take turns on the model.
/// </summary>
public sealed class SharpTuneEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    readonly TextEmbedder embedder;
    readonly bool ownsEmbedder;
    readonly SemaphoreSlim turn = new(1, 1);

    public SharpTuneEmbeddingGenerator(TextEmbedder embedder, string? modelId = null, bool ownsEmbedder = false)
    {
        this.embedder = embedder;
        this.ownsEmbedder = ownsEmbedder;
        Metadata = new EmbeddingGeneratorMetadata("sharptune", null, modelId, embedder.Dimensions);
    }

    /// <summary>Loads a built-in encoder name (<c>minilm</c>, <c>arctic-xs</c>), a sentence-transformers folder or an .onnx file.</summary>
    public static SharpTuneEmbeddingGenerator Load(string model) => new(TextEmbedder.Load(model), model, ownsEmbedder: true);

    public EmbeddingGeneratorMetadata Metadata { get; }

    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var texts = values.ToList();
        if (options?.Dimensions is { } dimensions && dimensions != embedder.Dimensions)
            throw new ArgumentException($"the model gives {embedder.Dimensions} dimensions, {dimensions} were asked for");
        await turn.WaitAsync(cancellationToken);
        TextEmbeddings result;
        try
        {
            result = await Task.Run(() => embedder.Embed(texts), cancellationToken);
        }
        finally
        {
            turn.Release();
        }
        var created = DateTimeOffset.UtcNow;
        return new GeneratedEmbeddings<Embedding<float>>(result.Vectors.Select(v => new Embedding<float>(v) { ModelId = Metadata.DefaultModelId, CreatedAt = created }))
        {
            Usage = new UsageDetails { InputTokenCount = result.Tokens, TotalTokenCount = result.Tokens },
        };
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(EmbeddingGeneratorMetadata) ? Metadata
        : serviceType.IsInstanceOfType(this) ? this
        : null;

    public void Dispose()
    {
        if (ownsEmbedder) embedder.Dispose();
        turn.Dispose();
    }
}
