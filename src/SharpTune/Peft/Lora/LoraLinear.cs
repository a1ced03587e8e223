using SharpTune.Models.Bert;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lora;

/// <summary>
/// A Linear layer with a low-rank update (Hu et al. 2021; follows PEFT's <c>lora.Linear</c>):
/// <c>y = x W^T + b + (alpha/r) * B(A(dropout(x)))</c>. The frozen base keeps the keys <c>weight</c> (out, in)
/// and <c>bias</c> (out), so pretrained weights load unchanged; the adapter adds <c>lora_A.weight</c> (r, in)
/// and <c>lora_B.weight</c> (out, r). B starts at zero, so an untrained adapter changes nothing. Without a bias
/// (<c>hasBias: false</c>, as Llama's projections) there is no <c>bias</c> key, as in <c>nn.Linear</c>.
/// </summary>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>, IMergeableLinear
{
    readonly Parameter weight;
    readonly Parameter? bias;
    readonly Linear lora_A;
    readonly Linear lora_B;
    readonly FastDropoutModule lora_dropout;
    bool merged;

    public LoraLinear(int inFeatures, int outFeatures, LoraOptions options, bool hasBias = true) : base(nameof(LoraLinear))
    {
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Rank = options.R;
        Scaling = options.Scaling;
        (weight, var initialBias) = LinearBase.Create(inFeatures, outFeatures);
        if (hasBias) bias = initialBias;
        else initialBias.Dispose();
        lora_A = nn.Linear(inFeatures, options.R, hasBias: false);
        lora_B = nn.Linear(options.R, outFeatures, hasBias: false);
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

    /// <param name="x">(..., in)</param>
    /// <returns>(..., out)</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var result = nn.functional.linear(x, weight, bias);
        if (!merged)
            result = result + lora_B.forward(lora_A.forward(lora_dropout.forward(x))) * Scaling; // (..., r) -> (..., out)
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>(alpha/r) B A: (out, r) @ (r, in) = (out, in).</summary>
    Tensor Delta() => lora_B.weight!.matmul(lora_A.weight!) * Scaling;

    public void Merge()
    {
        if (merged) return;
        using var noGrad = no_grad();
        using var delta = Delta();
        weight.add_(delta);
        merged = true;
    }

    public void Unmerge()
    {
        if (!merged) return;
        using var noGrad = no_grad();
        using var delta = Delta();
        weight.sub_(delta);
        merged = false;
    }

    public (Tensor Weight, Tensor? Bias) MergedWeights()
    {
        using var noGrad = no_grad();
        if (merged) return (weight.clone(), bias?.clone());
        using var delta = Delta();
        return (weight + delta, bias?.clone());
    }
}
