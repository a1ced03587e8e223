using System.Text.Json;
using SharpTune.Models;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Inference;

/// <summary>Embeddings of a batch of texts, and the tokens they took.</summary>
public sealed record TextEmbeddings(IReadOnlyList<float[]> Vectors, int Tokens)
{
    /// <summary>The tokens each text took (after truncation), in order; they sum to <see cref="Tokens"/>.</summary>
    public IReadOnlyList<int> TokensPerText { get; init; } = [];
}

/// <summary>
/// Sentence embeddings from an encoder as sentence-transformers computes them: the token states pooled as the model was
/// trained (<see cref="PoolingDefault"/>: mean of the real tokens, [CLS], or the pooler), then scaled to unit length when
/// the model's <c>modules.json</c> ends in a <c>Normalize</c> module (the built-in models do).
/// </summary>
public sealed class TextEmbedder : IDisposable
{
    readonly PretrainedEncoder encoder;
    readonly IEncoderTokenizer tokenizer;
    readonly bool ownsEncoder;

    public TextEmbedder(PretrainedEncoder encoder, bool normalize, bool ownsEncoder = false)
    {
        this.encoder = encoder;
        this.ownsEncoder = ownsEncoder;
        tokenizer = encoder.CreateTokenizer();
        Normalize = normalize;
        encoder.Model.eval();
    }

    /// <summary>Loads a built-in name, a Hugging Face (sentence-transformers) folder or an .onnx file.</summary>
    public static TextEmbedder Load(string spec)
    {
        var encoder = PretrainedEncoder.Load(spec);
        return new TextEmbedder(encoder, NormalizesOutput(spec, encoder), ownsEncoder: true);
    }

    public Pooling Pooling => encoder.Pooling.Pooling;
    public bool Normalize { get; }
    public int Dimensions => encoder.Config.HiddenSize;
    public int MaxLength => encoder.Config.MaxPositionEmbeddings;
    public IEncoderTokenizer Tokenizer => tokenizer;

    /// <summary>Texts longer than the model's positions are truncated, as sentence-transformers does.</summary>
    public TextEmbeddings Embed(IReadOnlyList<string> texts, int batchSize = 32)
    {
        var vectors = new List<float[]>(texts.Count);
        var tokensPerText = new List<int>(texts.Count);
        using var noGrad = no_grad();
        for (int start = 0; start < texts.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var encoded = texts.Skip(start).Take(batchSize).Select(t => tokenizer.Encode(t, maxLength: MaxLength)).ToList();
            tokensPerText.AddRange(encoded.Select(e => e.Length));
            using var batch = TokenBatch.Collate(encoded, tokenizer.PadId);
            using var output = encoder.Model.forward(batch.InputIds, batch.AttentionMask, batch.TokenTypeIds);
            var hidden = output.LastHiddenState;                                              // (B, T, H)
            var pooled = Pooling switch
            {
                Pooling.Mean => MeanOfRealTokens(hidden, batch.AttentionMask),
                Pooling.Pooler when output.PooledOutput is { } p => p,
                _ => hidden.select(1, 0),
            };                                                                                // (B, H)
            if (Normalize) pooled = nn.functional.normalize(pooled.to_type(ScalarType.Float32), p: 2, dim: -1);
            var values = pooled.to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
            int h = (int)pooled.shape[1];
            for (int b = 0; b < encoded.Count; b++) vectors.Add(values.AsSpan(b * h, h).ToArray());
        }
        return new TextEmbeddings(vectors, tokensPerText.Sum()) { TokensPerText = tokensPerText };
    }

    static Tensor MeanOfRealTokens(Tensor hidden, Tensor mask)
    {
        var weights = mask.unsqueeze(-1).to_type(hidden.dtype);                              // (B, T, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9);                   // (B, H)
    }

    /// <summary>
    /// Whether sentence-transformers scales this model's output to unit length: a <c>Normalize</c> module in the folder's
    /// <c>modules.json</c> (beside an .onnx file: its folder's); the built-in models are sentence-transformers models
    /// that end in one.
    /// </summary>
    public static bool NormalizesOutput(string spec, PretrainedEncoder encoder)
    {
        if (encoder.Origin == WeightOrigin.BuiltIn) return true;
        string folder = Directory.Exists(spec) ? spec : Path.GetDirectoryName(Path.GetFullPath(spec))!;
        string modules = Path.Combine(folder, "modules.json");
        if (!File.Exists(modules)) return false;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(modules));
            return doc.RootElement.ValueKind == JsonValueKind.Array && doc.RootElement.EnumerateArray().Any(m =>
                m.ValueKind == JsonValueKind.Object && m.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String
                && type.GetString()!.EndsWith(".Normalize", StringComparison.Ordinal));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{modules}: not valid sentence-transformers module JSON ({e.Message})", e);
        }
    }

    public void Dispose()
    {
        if (ownsEncoder) encoder.Dispose();
    }
}
