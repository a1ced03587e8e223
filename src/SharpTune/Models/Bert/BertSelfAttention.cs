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
        Tensor Heads(nn.Module<Tensor, Tensor> projection) =>
            projection.forward(hidden).view(batch, length, heads, headSize).transpose(1, 2); // (B, N, T, D)

        var q = Heads(query);
        var k = Heads(key);
        var v = Heads(value);
        if (prefix is { } p)
        {
            k = cat([p.Key, k], 2); // (B, N, P+T, D)
            v = cat([p.Value, v], 2);
        }
        if (bf16)
        {
            // Mixed precision: the attention products in bf16, the result back in the stream's dtype.
            var half = ScalarType.BFloat16;
            var reduced = nn.functional.scaled_dot_product_attention(
                q.to(half), k.to(half), v.to(half), additiveMask?.to(half), training ? dropoutProb : 0.0);
            return reduced.to(hidden.dtype).transpose(1, 2).reshape(batch, length, heads * headSize);
        }
        var context = nn.functional.scaled_dot_product_attention(
            q, k, v, additiveMask, training ? dropoutProb : 0.0); // (B, N, T, D)
        return context.transpose(1, 2).reshape(batch, length, heads * headSize); // (B, T, H)
    }
}
