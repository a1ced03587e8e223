using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// Root-mean-square normalisation, as HF <c>LlamaRMSNorm</c>: the statistics and the scaling run in float32 whatever
/// the input's dtype, the result is cast back before the weight multiplies it. Key <c>weight</c>.
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double eps;

    public RmsNorm(int size, double eps) : base(nameof(RmsNorm))
    {
        weight = new Parameter(ones(size));
        this.eps = eps;
        RegisterComponents();
    }

    /// <param name="input">(..., H)</param>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input.to(ScalarType.Float32);
        var variance = x.pow(2).mean([-1], keepdim: true);
        x = x * (variance + eps).rsqrt();
        return (weight * x.to(input.dtype)).MoveToOuterDisposeScope();
    }
}
