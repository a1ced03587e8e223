using System.Text.Json;
using SharpTune.Models.Bert;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// How an encoder turns a text into one vector, as it was trained to: its pooling (<see cref="PoolingDefault"/>) and
/// whether the vector is scaled to unit length (sentence-transformers' <c>Normalize</c> module), with the reason.
/// </summary>
public sealed record SentenceEmbedding(Pooling Pooling, bool Normalize, string Reason)
{
    /// <summary>
    /// The embedding <paramref name="encoder"/> (loaded from <paramref name="spec"/>) was trained to produce. Both built-in
    /// models are sentence-transformers models whose last module is <c>Normalize</c>; a folder (or the folder of an .onnx
    /// file) says so in <c>modules.json</c>; a plain encoder is not normalised.
    /// </summary>
    public static SentenceEmbedding For(string spec, PretrainedEncoder encoder)
    {
        var pooling = encoder.Pooling;
        if (BuiltInModels.Find(spec) is { } builtIn)
            return new(pooling.Pooling, true, $"{pooling.Reason}; {builtIn.HuggingFaceId} ends in a Normalize module");
        string? folder = Directory.Exists(spec) ? spec : File.Exists(spec) ? Path.GetDirectoryName(Path.GetFullPath(spec)) : null;
        bool normalize = folder is not null && HasNormalizeModule(folder);
        return new(pooling.Pooling, normalize, normalize ? $"{pooling.Reason}; modules.json ends in a Normalize module" : pooling.Reason);
    }

    /// <summary>Whether the sentence-transformers <c>modules.json</c> in <paramref name="folder"/> lists a <c>Normalize</c> module.</summary>
    public static bool HasNormalizeModule(string folder)
    {
        string modules = Path.Combine(folder, "modules.json");
        if (!File.Exists(modules)) return false;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(modules));
            return doc.RootElement.ValueKind == JsonValueKind.Array && doc.RootElement.EnumerateArray().Any(module =>
                module.TryGetProperty("type", out var type) && type.GetString()?.EndsWith(".Normalize", StringComparison.Ordinal) == true);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{modules}: not valid sentence-transformers module JSON ({e.Message})", e);
        }
    }

    /// <summary>
    /// The embeddings of a batch, (B, H), in process: the encoder, the pooling (mean over the real tokens, [CLS], or [CLS]
    /// through the pooler), then the L2 normalisation when the model has one.
    /// </summary>
    public Tensor Embed(BertModel model, Tensor inputIds, Tensor attentionMask, Tensor tokenTypeIds)
    {
        using var scope = NewDisposeScope();
        var output = model.forward(inputIds, attentionMask, tokenTypeIds); // its tensors belong to this scope; the result moves out
        var hidden = output.LastHiddenState; // (B, T, H)
        var pooled = Pooling switch
        {
            Pooling.Mean => MeanOfRealTokens(hidden, attentionMask),
            Pooling.Cls => hidden[.., 0],
            _ => output.PooledOutput ?? throw new ArgumentException("This encoder has no pooler; pool with [CLS] or the mean."),
        };
        if (Normalize) pooled = nn.functional.normalize(pooled, p: 2, dim: 1);
        return pooled.MoveToOuterDisposeScope();
    }

    static Tensor MeanOfRealTokens(Tensor hidden, Tensor attentionMask)
    {
        var weights = attentionMask.to(hidden.dtype).unsqueeze(-1); // (B, T, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1);
    }
}
