using SharpTune.Models.Bert;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.IA3;

/// <summary>
/// A Linear layer rescaled by a learned vector (IA3, Liu et al. 2022; follows PEFT's <c>ia3.Linear</c>).
/// Attention targets scale the OUTPUT: <c>ia3_l</c> is (out, 1) and <c>y = (x W^T + b) * l</c>.
/// Feed-forward targets scale the INPUT: <c>ia3_l</c> is (1, in) and <c>y = (x * l) W^T + b</c>.
/// The shapes are PEFT's, so the saved tensors load there unchanged. <c>l</c> starts at ones, so an untrained
/// adapter changes nothing; <c>weight</c> (out, in) and <c>bias</c> (out) keep the pretrained keys.
/// </summary>
public sealed class Ia3Linear : nn.Module<Tensor, Tensor>, IMergeableLinear
{
    readonly Parameter weight;
    readonly Parameter bias;
    readonly Parameter ia3_l;
    bool merged;

    public Ia3Linear(int inFeatures, int outFeatures, bool isFeedForward) : base(nameof(Ia3Linear))
    {
        IsFeedForward = isFeedForward;
        (weight, bias) = LinearBase.Create(inFeatures, outFeatures);
        ia3_l = new Parameter(isFeedForward ? ones(1, inFeatures) : ones(outFeatures, 1));
        RegisterComponents();
    }

    public bool IsFeedForward { get; }
    public bool IsMerged => merged;

    /// <param name="x">(..., in)</param>
    /// <returns>(..., out)</returns>
    public override Tensor forward(Tensor x)
    {
        if (merged) return nn.functional.linear(x, weight, bias);
        using var scope = NewDisposeScope();
        var scale = ia3_l.flatten(); // (in) or (out)
        var result = IsFeedForward
            ? nn.functional.linear(x * scale, weight, bias)
            : nn.functional.linear(x, weight, bias) * scale;
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Folds the vector in, as PEFT's merge does: W * l scales rows (out, 1) or columns (1, in); an output
    /// scale also scales the bias. Exact, since the scaling commutes with the matmul.
    /// </summary>
    public void Merge()
    {
        if (merged) return;
        using var noGrad = no_grad();
        using var scale = ia3_l.flatten();
        weight.mul_(ia3_l);
        if (!IsFeedForward) bias.mul_(scale);
        merged = true;
    }

    /// <summary>Divides the vector back out (PEFT does the same; exact up to rounding while no entry of l is near zero).</summary>
    public void Unmerge()
    {
        if (!merged) return;
        using var noGrad = no_grad();
        using var scale = ia3_l.flatten();
        weight.div_(ia3_l);
        if (!IsFeedForward) bias.div_(scale);
        merged = false;
    }

    public (Tensor Weight, Tensor Bias) MergedWeights()
    {
        using var noGrad = no_grad();
        if (merged) return (weight.clone(), bias.clone());
        using var scale = ia3_l.flatten();
        return (weight * ia3_l, IsFeedForward ? bias.clone() : bias * scale);
    }
}
