using SharpTune.Models.Decoders.Common;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Gpt2;

/// <summary>
/// GPT-2's "Conv1D", as HF <c>pytorch_utils.Conv1D</c>: a Linear layer whose weight is stored transposed,
/// (in, out), and applied as <c>y = x · W + b</c> (keys <c>weight</c>, <c>bias</c>).
/// </summary>
public sealed class Conv1D : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter bias;

    public Conv1D(int inFeatures, int outFeatures) : base(nameof(Conv1D))
    {
        weight = new Parameter(empty(inFeatures, outFeatures).normal_(0, 0.02));
        bias = new Parameter(zeros(outFeatures));
        RegisterComponents();
    }

    /// <param name="input">(..., in)</param>
    /// <returns>(..., out)</returns>
    public override Tensor forward(Tensor input)
    {
        var shape = input.shape[..^1].Append(weight.shape[1]).ToArray();
        return addmm(bias, input.reshape(-1, input.shape[^1]), weight, 1, 1).view(shape);
    }
}

/// <summary>Causal multi-head self-attention with a key/value cache, as HF <c>GPT2Attention</c> (keys <c>c_attn</c> fused q/k/v, <c>c_proj</c>).</summary>
public sealed class Gpt2Attention : nn.Module
{
    readonly Conv1D c_attn;
    readonly Conv1D c_proj;
    readonly Gpt2Config config;

    public Gpt2Attention(Gpt2Config config) : base(nameof(Gpt2Attention))
    {
        c_attn = new Conv1D(config.NEmbd, 3 * config.NEmbd);
        c_proj = new Conv1D(config.NEmbd, config.NEmbd);
        this.config = config;
        RegisterComponents();
    }

    /// <param name="hidden">(B, T, E)</param>
    /// <returns>(B, T, E)</returns>
    public Tensor forward(Tensor hidden, DecoderInputs inputs, KeyValueCache? cache, int layer)
    {
        long batch = hidden.shape[0], length = hidden.shape[1];
        var parts = c_attn.forward(hidden).split(config.NEmbd, 2);                           // 3 × (B, T, E)
        Tensor Heads(Tensor x) => x.view(batch, length, config.NHead, config.HeadDim).transpose(1, 2); // (B, N, T, D)
        var (q, k, v) = (Heads(parts[0]), Heads(parts[1]), Heads(parts[2]));
        if (cache is not null) (k, v) = cache.Append(layer, k, v);                        // (B, N, P + T, D)
        var context = GroupedQueryAttention.Attend(q, k, v, inputs, training ? config.AttnPdrop : 0); // (B, N, T, D)
        var output = c_proj.forward(context.transpose(1, 2).reshape(batch, length, config.NEmbd));
        return nn.functional.dropout(output, config.ResidPdrop, training);
    }
}

/// <summary>The feed-forward block, as HF <c>GPT2MLP</c>: <c>c_proj(gelu_new(c_fc(x)))</c>.</summary>
public sealed class Gpt2Mlp : nn.Module<Tensor, Tensor>
{
    readonly Conv1D c_fc;
    readonly Conv1D c_proj;
    readonly double dropout;

    public Gpt2Mlp(Gpt2Config config) : base(nameof(Gpt2Mlp))
    {
        c_fc = new Conv1D(config.NEmbd, config.InnerSize);
        c_proj = new Conv1D(config.InnerSize, config.NEmbd);
        dropout = config.ResidPdrop;
        RegisterComponents();
    }

    /// <param name="hidden">(B, T, E)</param>
    public override Tensor forward(Tensor hidden)
    {
        // gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), libtorch's tanh-approximated GELU
        var inner = c_fc.forward(hidden).gelu(GELU.Approximate.tanh);                        // (B, T, I)
        return nn.functional.dropout(c_proj.forward(inner), dropout, training);
    }
}

/// <summary>One pre-norm block, as HF <c>GPT2Block</c> (keys <c>transformer.h.{i}.*</c>).</summary>
public sealed class Gpt2Block : nn.Module
{
    readonly LayerNorm ln_1;
    readonly Gpt2Attention attn;
    readonly LayerNorm ln_2;
    readonly Gpt2Mlp mlp;
    readonly int index;

    public Gpt2Block(Gpt2Config config, int index) : base(nameof(Gpt2Block))
    {
        ln_1 = nn.LayerNorm(config.NEmbd, config.LayerNormEpsilon);
        attn = new Gpt2Attention(config);
        ln_2 = nn.LayerNorm(config.NEmbd, config.LayerNormEpsilon);
        mlp = new Gpt2Mlp(config);
        this.index = index;
        RegisterComponents();
    }

    /// <param name="hidden">(B, T, E)</param>
    public Tensor forward(Tensor hidden, DecoderInputs inputs, KeyValueCache? cache)
    {
        hidden = hidden + attn.forward(ln_1.forward(hidden), inputs, cache, index);
        return hidden + mlp.forward(ln_2.forward(hidden));
    }
}
