using SharpTune.Models.Common;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>
/// A key/value prefix for one layer (prefix tuning, P-tuning v2): both (B, N, P, D), placed in front of the
/// layer's own keys and values. Real tokens keep positions 0..T-1.
/// </summary>
public readonly record struct KeyValuePrefix(Tensor Key, Tensor Value);

/// <summary>
/// Multi-head self-attention through <c>scaled_dot_product_attention</c>. Follows HF <c>BertSelfAttention</c>
/// (keys <c>attention.self.query/key/value</c>).
/// </summary>
public sealed class BertSelfAttention : nn.Module
{
    readonly nn.Module<Tensor, Tensor> query;
    readonly nn.Module<Tensor, Tensor> key;
    readonly nn.Module<Tensor, Tensor> value;
    readonly int heads;
    readonly int headSize;
    readonly double dropoutProb;
    readonly bool bf16;

    public BertSelfAttention(BertConfig config, LinearFactory linears, string path) : base(nameof(BertSelfAttention))
    {
        query = linears(new LinearSite($"{path}.query", config.HiddenSize, config.HiddenSize));
        key = linears(new LinearSite($"{path}.key", config.HiddenSize, config.HiddenSize));
        value = linears(new LinearSite($"{path}.value", config.HiddenSize, config.HiddenSize));
        heads = config.NumAttentionHeads;
        headSize = config.HeadSize;
        dropoutProb = config.AttentionProbsDropoutProb;
        bf16 = config.Bf16;
        RegisterComponents();
    }

    /// <param name="hidden">(B, T, H)</param>
    /// <param name="additiveMask">(B, 1, 1, P+T) with 0 where attention is allowed and a large negative value elsewhere.</param>
    /// <param name="prefix">Optional per-layer key/value prefix, each (B, N, P, D).</param>
    public Tensor forward(Tensor hidden, Tensor? additiveMask, KeyValuePrefix? prefix)
    {
        long batch = hidden.shape[0], length = hidden.shape[1];
        Tensor Heads(nn.Module<Tensor, Tensor> projection) =>
            projection.forward(hidden).view(batch, length, heads, headSize).transpose(1, 2); // (B, N, T, D)
        var (q, k, v) = (Heads(query), Heads(key), Heads(value));
        if (prefix is { } p)
        {
            k = cat([p.Key, k.to(p.Key.dtype)], 2); // (B, N, P+T, D)
            v = cat([p.Value, v.to(p.Value.dtype)], 2);
        }
        // Mixed precision: the attention products in bf16, as autocast runs them. The context keeps the dtype of
        // the projections (bf16 from bf16 Linear layers), which is what the output projection takes.
        var type = bf16 ? ScalarType.BFloat16 : hidden.dtype;
        var context = training && dropoutProb > 0
            ? AttentionWithDropout(q.to(type), k.to(type), v.to(type), additiveMask, dropoutProb)
            : nn.functional.scaled_dot_product_attention(q.to(type), k.to(type), v.to(type), additiveMask?.to(type)); // (B, N, T, D)
        return context.to(q.dtype).transpose(1, 2).reshape(batch, length, heads * headSize); // (B, T, H)
    }

    /// <summary>
    /// Attention with dropout on the probabilities, as SDPA's reference path computes it: libtorch's fused CPU
    /// kernel has no dropout, and its fallback draws the mask with libtorch's dropout, the slowest part of a
    /// training step; <see cref="FastDropout"/> draws it here. The softmax runs in fp32 (also under bf16).
    /// </summary>
    /// <param name="q">(B, N, T, D)</param>
    /// <param name="k">(B, N, S, D), S = P + T with a prefix</param>
    /// <param name="v">(B, N, S, D)</param>
    /// <param name="additiveMask">(B, 1, 1, S) or null</param>
    /// <param name="dropout">Probability of dropping an attention probability.</param>
    /// <returns>(B, N, T, D) in the dtype of <paramref name="v"/>.</returns>
    public static Tensor AttentionWithDropout(Tensor q, Tensor k, Tensor v, Tensor? additiveMask, double dropout)
    {
        var scores = q.matmul(k.transpose(-2, -1)).to(ScalarType.Float32) * (1.0 / Math.Sqrt(q.shape[^1])); // (B, N, T, S)
        if (additiveMask is not null) scores = scores + additiveMask.to(ScalarType.Float32);
        var probabilities = FastDropout.Apply(scores.softmax(-1), dropout, training: true);
        return probabilities.to(v.dtype).matmul(v);
    }
}
