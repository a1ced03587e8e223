using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Common;

/// <summary>The sizes and options of a rotary grouped-query attention block.</summary>
/// <param name="QkvBias">Whether q/k/v projections have biases (Qwen2: yes; Llama: <c>attention_bias</c>).</param>
/// <param name="OutputBias">Whether <c>o_proj</c> has a bias (Llama: <c>attention_bias</c>; Qwen2: no).</param>
public sealed record AttentionShape(int HiddenSize, int Heads, int KeyValueHeads, int HeadDim, bool QkvBias, bool OutputBias, double Dropout);

/// <summary>
/// Grouped-query self-attention with rotary positions and a key/value cache, as HF <c>LlamaAttention</c> (keys
/// <c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>, <c>o_proj</c>). Each group of Heads / KeyValueHeads query heads shares
/// one key/value head (HF <c>repeat_kv</c>); the products run through <c>scaled_dot_product_attention</c>.
/// </summary>
public sealed class GroupedQueryAttention : nn.Module
{
    readonly nn.Module<Tensor, Tensor> q_proj;
    readonly nn.Module<Tensor, Tensor> k_proj;
    readonly nn.Module<Tensor, Tensor> v_proj;
    readonly nn.Module<Tensor, Tensor> o_proj;
    readonly AttentionShape shape;

    public GroupedQueryAttention(AttentionShape shape, LinearFactory linears, string path) : base(nameof(GroupedQueryAttention))
    {
        this.shape = shape;
        int q = shape.Heads * shape.HeadDim, kv = shape.KeyValueHeads * shape.HeadDim;
        q_proj = linears(new($"{path}.q_proj", shape.HiddenSize, q, shape.QkvBias));
        k_proj = linears(new($"{path}.k_proj", shape.HiddenSize, kv, shape.QkvBias));
        v_proj = linears(new($"{path}.v_proj", shape.HiddenSize, kv, shape.QkvBias));
        o_proj = linears(new($"{path}.o_proj", q, shape.HiddenSize, shape.OutputBias));
        RegisterComponents();
    }

    internal AttentionShape Shape => shape;

    internal (nn.Module<Tensor, Tensor> Q, nn.Module<Tensor, Tensor> K, nn.Module<Tensor, Tensor> V, nn.Module<Tensor, Tensor> O) Projections => (q_proj, k_proj, v_proj, o_proj);

    /// <param name="hidden">(B, T, H)</param>
    /// <param name="cos">(B, T, D) from <see cref="RotaryEmbedding.CosSin"/>.</param>
    /// <param name="sin">(B, T, D)</param>
    /// <param name="inputs">The mask for this forward.</param>
    /// <param name="cache">Appended to (layer <paramref name="layer"/>) and attended over when given.</param>
    /// <returns>(B, T, H)</returns>
    public Tensor forward(Tensor hidden, Tensor cos, Tensor sin, DecoderInputs inputs, KeyValueCache? cache, int layer)
    {
        long batch = hidden.shape[0], length = hidden.shape[1];
        Tensor Heads(nn.Module<Tensor, Tensor> projection, int heads) =>
            projection.forward(hidden).view(batch, length, heads, shape.HeadDim).transpose(1, 2); // (B, N, T, D)
        var q = RotaryEmbedding.Apply(Heads(q_proj, shape.Heads), cos, sin);
        var k = RotaryEmbedding.Apply(Heads(k_proj, shape.KeyValueHeads), cos, sin);
        var v = Heads(v_proj, shape.KeyValueHeads);
        if (cache is not null) (k, v) = cache.Append(layer, k, v);            // (B, KV, P + T, D)
        var context = Attend(q, RepeatKeyValues(k, shape.Heads), RepeatKeyValues(v, shape.Heads), inputs, training ? shape.Dropout : 0);
        return o_proj.forward(context.transpose(1, 2).reshape(batch, length, shape.Heads * shape.HeadDim)); // (B, T, H)
    }

    /// <summary>(B, KV, S, D) → (B, N, S, D): key/value head j serves query heads j·N/KV … (j+1)·N/KV − 1, as HF <c>repeat_kv</c>.</summary>
    public static Tensor RepeatKeyValues(Tensor x, int heads)
    {
        long batch = x.shape[0], keyValueHeads = x.shape[1], length = x.shape[2], dim = x.shape[3];
        if (keyValueHeads == heads) return x;
        return x.unsqueeze(2).expand(batch, keyValueHeads, heads / keyValueHeads, length, dim).reshape(batch, heads, length, dim);
    }

    /// <summary>Scaled dot-product attention of (B, N, T, D) queries over (B, N, S, D) keys and values under the forward's mask.</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, DecoderInputs inputs, double dropout) =>
        nn.functional.scaled_dot_product_attention(q, k, v, inputs.Mask, dropout, inputs.IsCausal); // (B, N, T, D)
}
