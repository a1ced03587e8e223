using SharpTune.Models.Common;
using SharpTune.Models;
using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lora;

/// <summary>
/// A Linear layer with a low-rank update (Hu et al. 2021; follows PEFT's <c>lora.Linear</c>):
/// <c>y = x W^T + b + (alpha/r) * B(A(dropout(x)))</c>. The frozen base keeps the keys <c>weight</c> and, when the
/// layer has one, <c>bias</c> (out), so pretrained weights load unchanged; the adapter adds <c>lora_A.weight</c> (r, in)
/// and <c>lora_B.weight</c> (out, r). B starts at zero, so an untrained adapter changes nothing. Over GPT-2's
/// transposed layout (weight (in, out), PEFT's <c>fan_in_fan_out</c>) the update is the same and merges transposed.
/// </summary>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>, IMergeableLinear
{
    readonly Parameter? weight; // null over stored blocks (a quantized base)
    readonly QuantizedMatrix? stored;
    readonly Parameter? bias;
    readonly Linear lora_A;
    readonly Linear lora_B;
    readonly FastDropoutModule lora_dropout;
    readonly bool transposed;
    bool merged;

    /// <summary>Over an nn.Linear with a bias (BERT's layers).</summary>
    public LoraLinear(int inFeatures, int outFeatures, LoraOptions options) : this(new LinearSite("", inFeatures, outFeatures), options) { }

    public LoraLinear(LinearSite site, LoraOptions options) : base(nameof(LoraLinear))
    {
        InFeatures = site.InFeatures;
        OutFeatures = site.OutFeatures;
        Rank = options.R;
        Scaling = options.Scaling;
        transposed = site.Transposed;
        (weight, bias) = site.NewParameters();
        stored = site.Stored;
        lora_A = nn.Linear(site.InFeatures, options.R, hasBias: false);
        lora_B = nn.Linear(options.R, site.OutFeatures, hasBias: false);
        lora_dropout = new FastDropoutModule(options.Dropout);
        RegisterComponents();

        using var noGrad = no_grad();
        // PEFT's init_lora_weights=True: A kaiming-uniform(a=sqrt 5), B zeros.
        nn.init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
        nn.init.zeros_(lora_B.weight!);
    }

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public int Rank { get; }

    /// <summary><c>alpha / r</c>.</summary>
    public double Scaling { get; }

    public bool IsMerged => merged;

    public bool AdapterDisabled
    {
        get => disabled;
        set => disabled = !value || !merged ? value : throw new InvalidOperationException("a merged LoRA layer cannot leave its adapter out; unmerge it first");
    }

    bool disabled;

    /// <summary>Whether the base weight is stored (in, out) (GPT-2's Conv1D).</summary>
    public bool IsTransposed => transposed;

    /// <summary>The adapter's <c>lora_A.weight</c> (r, in).</summary>
    public Parameter LoraA => lora_A.weight!;

    /// <summary>The adapter's <c>lora_B.weight</c> (out, r).</summary>
    public Parameter LoraB => lora_B.weight!;

    /// <param name="x">(..., in)</param>
    /// <returns>(..., out)</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var result = LinearSite.Apply(x, weight, stored, bias, transposed, training);
        if (!merged && !disabled)
        {
            // As PEFT: the adapter computes in lora_A's dtype (fp32 over a bf16 base), the sum is cast back to the
            // base result's dtype (added in place: in the promoted dtype, then stored in the result's). The scaling
            // multiplies the rank-r intermediate, not the (..., out) update: the same product, r/out of the work.
            var update = lora_B.forward(lora_A.forward(lora_dropout.forward(x).to(lora_A.weight!.dtype)) * Scaling); // (..., r) -> (..., out)
            result.add_(update);
        }
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>(alpha/r) B A: (out, r) @ (r, in) = (out, in), transposed to the base's layout.</summary>
    Tensor Delta()
    {
        var delta = lora_B.weight!.matmul(lora_A.weight!) * Scaling;
        return transposed ? delta.t() : delta;
    }

    public void Merge()
    {
        if (merged) return;
        var dense = weight ?? throw StoredCannotMerge();
        using var noGrad = no_grad();
        using var delta = Delta();
        dense.add_(delta);
        merged = true;
    }

    public void Unmerge()
    {
        if (!merged) return;
        var dense = weight ?? throw StoredCannotMerge();
        using var noGrad = no_grad();
        using var delta = Delta();
        dense.sub_(delta);
        merged = false;
    }

    public (Tensor Weight, Tensor? Bias) MergedWeights()
    {
        using var noGrad = no_grad();
        var dense = LinearSite.DenseWeight(weight, stored, transposed);
        if (merged) return (dense, bias?.clone());
        using var delta = Delta();
        return (dense.add_(delta), bias?.clone());
    }

    static InvalidOperationException StoredCannotMerge() => new(
        "a LoRA layer over quantized blocks cannot merge in place; exports merge into a dequantized copy (MergedWeights)");
}
