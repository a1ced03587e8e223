using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Common;

/// <summary>
/// A Linear layer for bf16 mixed precision on CPU. TorchSharp has no autocast, so this does what autocast
/// does for a matrix product: the input, weight and bias are cast to bf16 and the result stays bf16, so the
/// ops after it that autocast also runs in bf16 (GELU, dropout, the next product) take it without casts; the
/// next op that needs fp32 (the residual add before LayerNorm) promotes it. The parameters stay fp32 (master
/// weights) and autograd carries fp32 gradients back through the casts. Keys <c>weight</c> and <c>bias</c>,
/// as nn.Linear.
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

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var half = ScalarType.BFloat16;
        return nn.functional.linear(input.to(half), weight.to(half), bias.to(half)).MoveToOuterDisposeScope();
    }
}
