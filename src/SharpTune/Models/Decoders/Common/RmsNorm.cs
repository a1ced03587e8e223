using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// Root-mean-square normalisation, as HF <c>LlamaRMSNorm</c>: the statistics and the scaling run in float32 whatever
/// the input's dtype, the result is cast back before the weight multiplies it. With <c>fromOne</c>, as HF
/// <c>GemmaRMSNorm</c>: the weight is an offset from one (initialised to zeros), x·(1 + w) is computed in float32 and
/// only then cast back. Key <c>weight</c>.
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double eps;
    readonly bool fromOne;

    public RmsNorm(int size, double eps, bool fromOne = false) : base(nameof(RmsNorm))
    {
        weight = new Parameter(fromOne ? zeros(size) : ones(size));
        this.eps = eps;
        this.fromOne = fromOne;
        RegisterComponents();
    }

    /// <summary>The weight as it multiplies the normalised values, float32 (1 + w where the weights are offsets from one).</summary>
    internal float[] EffectiveWeight()
    {
        using var w = weight.detach().to(ScalarType.Float32);
        var values = w.data<float>().ToArray();
        if (fromOne) for (int i = 0; i < values.Length; i++) values[i] += 1f;
        return values;
    }

    internal double Eps => eps;

    /// <param name="input">(..., H)</param>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input.to(ScalarType.Float32);
        var variance = x.pow(2).mean([-1], keepdim: true);
        x = x * (variance + eps).rsqrt();
        var output = fromOne ? (x * (weight.to(ScalarType.Float32) + 1)).to(input.dtype) : weight * x.to(input.dtype);
        return output.MoveToOuterDisposeScope();
    }
}
