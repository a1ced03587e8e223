using TorchSharp.Modules;
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
        query = linears($"{path}.query", config.HiddenSize, config.HiddenSize);
        key = linears($"{path}.key", config.HiddenSize, config.HiddenSize);
        value = linears($"{path}.value", config.HiddenSize, config.HiddenSize);
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
        var (q, k, v) = Project(hidden); // each (B, N, T, D)
        if (prefix is { } p)
        {
            k = cat([p.Key, k.to(p.Key.dtype)], 2); // (B, N, P+T, D)
            v = cat([p.Value, v.to(p.Value.dtype)], 2);
        }
        // Mixed precision: the attention products in bf16, as autocast runs them. The context keeps the dtype of
        // the projections (bf16 from bf16 Linear layers), which is what the output projection takes.
        var type = bf16 ? ScalarType.BFloat16 : hidden.dtype;
        var context = nn.functional.scaled_dot_product_attention(
            q.to(type), k.to(type), v.to(type), additiveMask?.to(type), training ? dropoutProb : 0.0); // (B, N, T, D)
        return context.to(q.dtype).transpose(1, 2).reshape(batch, length, heads * headSize); // (B, T, H)
    }

    /// <summary>
    /// Queries, keys and values, each (B, N, T, D). When the three projections are plain Linear layers (no
    /// method wraps them) they run as one matrix product with the three weights side by side: one (H, 3H)
    /// product instead of three (H, H) ones, which the CPU runs faster, and the same parameters and gradients.
    /// In bf16 the fused product also stays in bf16 for the attention that follows.
    /// </summary>
    (Tensor Q, Tensor K, Tensor V) Project(Tensor hidden)
    {
        long batch = hidden.shape[0], length = hidden.shape[1];
        if (FusedWeights() is { } fused)
        {
            var (weight, bias) = fused;
            var input = bf16 ? hidden.to(ScalarType.BFloat16) : hidden;
            if (bf16) (weight, bias) = (weight.to(ScalarType.BFloat16), bias.to(ScalarType.BFloat16));
            var qkv = nn.functional.linear(input, weight, bias).view(batch, length, 3, heads, headSize).permute(2, 0, 3, 1, 4); // (3, B, N, T, D)
            return (qkv[0], qkv[1], qkv[2]);
        }
        Tensor Heads(nn.Module<Tensor, Tensor> projection) =>
            projection.forward(hidden).view(batch, length, heads, headSize).transpose(1, 2);
        return (Heads(query), Heads(key), Heads(value));
    }

    (Tensor Weight, Tensor Bias)? FusedWeights()
    {
        (Parameter W, Parameter B)? Plain(nn.Module<Tensor, Tensor> m) => m switch
        {
            Linear { bias: { } b } linear => (linear.weight!, b),
            Bf16Linear linear => (linear.Weight, linear.Bias),
            _ => null,
        };
        if (Plain(query) is not { } q || Plain(key) is not { } k || Plain(value) is not { } v) return null;
        return (cat([q.W, k.W, v.W], 0), cat([q.B, k.B, v.B], 0));
    }
}
