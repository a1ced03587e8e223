using SharpTune.Models.Decoders.Common;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Gpt2;

/// <summary>Causal multi-head self-attention with a key/value cache, as HF <c>GPT2Attention</c> (keys <c>c_attn</c> fused q/k/v, <c>c_proj</c>).</summary>
public sealed class Gpt2Attention : nn.Module
{
    readonly nn.Module<Tensor, Tensor> c_attn;
    readonly nn.Module<Tensor, Tensor> c_proj;
    readonly Gpt2Config config;

    public Gpt2Attention(Gpt2Config config, LinearFactory linears, string path) : base(nameof(Gpt2Attention))
    {
        c_attn = linears(new($"{path}.c_attn", config.NEmbd, 3 * config.NEmbd, Transposed: true));
        c_proj = linears(new($"{path}.c_proj", config.NEmbd, config.NEmbd, Transposed: true));
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
    readonly nn.Module<Tensor, Tensor> c_fc;
    readonly nn.Module<Tensor, Tensor> c_proj;
    readonly double dropout;

    public Gpt2Mlp(Gpt2Config config, LinearFactory linears, string path) : base(nameof(Gpt2Mlp))
    {
        c_fc = linears(new($"{path}.c_fc", config.NEmbd, config.InnerSize, Transposed: true));
        c_proj = linears(new($"{path}.c_proj", config.InnerSize, config.NEmbd, Transposed: true));
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

    public Gpt2Block(Gpt2Config config, int index, LinearFactory linears) : base(nameof(Gpt2Block))
    {
        string path = $"transformer.h.{index}";
        ln_1 = nn.LayerNorm(config.NEmbd, config.LayerNormEpsilon);
        attn = new Gpt2Attention(config, linears, $"{path}.attn");
        ln_2 = nn.LayerNorm(config.NEmbd, config.LayerNormEpsilon);
        mlp = new Gpt2Mlp(config, linears, $"{path}.mlp");
        this.index = index;
        RegisterComponents();
    }

    /// <summary>Whether training forwards keep only this block's input and recompute the rest in the backward pass (<see cref="ActivationCheckpoint"/>).</summary>
    public bool GradientCheckpointing { get; set; }

    /// <param name="hidden">(B, T, E)</param>
    public Tensor forward(Tensor hidden, DecoderInputs inputs, KeyValueCache? cache)
    {
        if (GradientCheckpointing && cache is null && ActivationCheckpoint.Applies(this))
            return ActivationCheckpoint.Run(
                t => Block(t[0]!, inputs with { Mask = t[1], PositionIds = t[2]! }, null), [hidden, inputs.Mask, inputs.PositionIds], parameters());
        return Block(hidden, inputs, cache);
    }

    Tensor Block(Tensor hidden, DecoderInputs inputs, KeyValueCache? cache)
    {
        hidden = hidden + attn.forward(ln_1.forward(hidden), inputs, cache, index);
        return hidden + mlp.forward(ln_2.forward(hidden));
    }
}
