using SharpTune.Peft;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>
/// A Linear layer for bf16 mixed precision on CPU. TorchSharp has no autocast, so the input, weight and
/// bias are cast to bf16 for the matrix product and the result back to the input's dtype; the parameters
/// stay fp32 (master weights), and autograd carries fp32 gradients back through the casts. Keys
/// <c>weight</c> and <c>bias</c>, as nn.Linear.
/// </summary>
public sealed class Bf16Linear : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter bias;

    public Bf16Linear(int inFeatures, int outFeatures) : base(nameof(Bf16Linear))
    {
        (weight, bias) = LinearBase.Create(inFeatures, outFeatures);
        RegisterComponents();
    }

    /// <summary>The fp32 master weight (out, in).</summary>
    public Parameter Weight => weight;

    /// <summary>The fp32 master bias (out).</summary>
    public Parameter Bias => bias;

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var output = nn.functional.linear(input.to(ScalarType.BFloat16), weight.to(ScalarType.BFloat16), bias.to(ScalarType.BFloat16));
        return output.to(input.dtype).MoveToOuterDisposeScope();
    }
}
