using SharpTune.Models;
using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.IA3;

/// <summary>
/// A Linear layer rescaled by a learned vector (IA3, Liu et al. 2022; follows PEFT's <c>ia3.Linear</c>).
/// Attention targets scale the OUTPUT: <c>ia3_l</c> is (out, 1) and <c>y = (x W^T + b) * l</c>.
/// Feed-forward targets scale the INPUT: <c>ia3_l</c> is (1, in) and <c>y = (x * l) W^T + b</c>.
/// The shapes are PEFT's, so the saved tensors load there unchanged. <c>l</c> starts at ones, so an untrained
/// adapter changes nothing; <c>weight</c> and <c>bias</c> (out, when the layer has one) keep the pretrained keys.
/// Over GPT-2's transposed layout (weight (in, out)) the vector folds in along the other axis.
/// </summary>
public sealed class Ia3Linear : nn.Module<Tensor, Tensor>, IMergeableLinear
{
    readonly Parameter? weight; // null over stored blocks (a quantized base)
    readonly QuantizedMatrix? stored;
    readonly Parameter? bias;
    readonly Parameter ia3_l;
    readonly bool transposed;
    bool merged;

    /// <summary>Over an nn.Linear with a bias (BERT's layers).</summary>
    public Ia3Linear(int inFeatures, int outFeatures, bool isFeedForward) : this(new LinearSite("", inFeatures, outFeatures), isFeedForward) { }

    public Ia3Linear(LinearSite site, bool isFeedForward) : base(nameof(Ia3Linear))
    {
        IsFeedForward = isFeedForward;
        transposed = site.Transposed;
        (weight, bias) = site.NewParameters();
        stored = site.Stored;
        ia3_l = new Parameter(isFeedForward ? ones(1, site.InFeatures) : ones(site.OutFeatures, 1));
        RegisterComponents();
    }

    public bool IsFeedForward { get; }
    public bool IsMerged => merged;

    public bool AdapterDisabled
    {
        get => disabled;
        set => disabled = !value || !merged ? value : throw new InvalidOperationException("a merged IA3 layer cannot leave its scaling out; unmerge it first");
    }

    bool disabled;

    /// <param name="x">(..., in)</param>
    /// <returns>(..., out)</returns>
    public override Tensor forward(Tensor x)
    {
        if (merged || disabled) return LinearSite.Apply(x, weight, stored, bias, transposed, training);
        using var scope = NewDisposeScope();
        var scale = ia3_l.flatten(); // (in) or (out)
        // As PEFT: the scaling computes in ia3_l's dtype (fp32 over a bf16 base) and is cast back to the dtype it
        // scales. All casts are no-ops when everything is fp32.
        var result = IsFeedForward
            ? LinearSite.Apply((x.to(scale.dtype) * scale).to(x.dtype), weight, stored, bias, transposed, training)
            : ScaleOutput(LinearSite.Apply(x, weight, stored, bias, transposed, training), scale);
        return result.MoveToOuterDisposeScope();

        static Tensor ScaleOutput(Tensor output, Tensor scale) => (output * scale).to(output.dtype);
    }

    /// <summary>The vector shaped to scale the stored weight: (out, 1) or (1, in) as PEFT keeps it, transposed for an (in, out) weight.</summary>
    Tensor WeightScale() => transposed ? ia3_l.t() : ia3_l.alias();

    /// <summary>
    /// Folds the vector in, as PEFT's merge does: W * l scales rows (out, 1) or columns (1, in); an output
    /// scale also scales the bias. Exact, since the scaling commutes with the matmul.
    /// </summary>
    public void Merge()
    {
        if (merged) return;
        var dense = weight ?? throw StoredCannotMerge();
        using var noGrad = no_grad();
        using var scale = ia3_l.flatten();
        using var weightScale = WeightScale();
        dense.mul_(weightScale);
        if (!IsFeedForward) bias?.mul_(scale);
        merged = true;
    }

    /// <summary>Divides the vector back out (PEFT does the same; exact up to rounding while no entry of l is near zero).</summary>
    public void Unmerge()
    {
        if (!merged) return;
        var dense = weight ?? throw StoredCannotMerge();
        using var noGrad = no_grad();
        using var scale = ia3_l.flatten();
        using var weightScale = WeightScale();
        dense.div_(weightScale);
        if (!IsFeedForward) bias?.div_(scale);
        merged = false;
    }

    public (Tensor Weight, Tensor? Bias) MergedWeights()
    {
        using var noGrad = no_grad();
        var dense = LinearSite.DenseWeight(weight, stored, transposed);
        if (merged) return (dense, bias?.clone());
        using var scale = ia3_l.flatten();
        using var weightScale = WeightScale();
        return (dense.mul_(weightScale), bias is null ? null : IsFeedForward ? bias.clone() : bias * scale);
    }

    static InvalidOperationException StoredCannotMerge() => new(
        "an IA3 layer over quantized blocks cannot merge in place; exports merge into a dequantized copy (MergedWeights)");
}
