using SharpTune.Models.Common;
using SharpTune.Models;
using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lora;

/// <summary>
/// A Linear layer with a low-rank update (Hu et al. 2021; follows PEFT's <c>lora.Linear</c>):
/// <c>y = x W^T + b + s * B(A(dropout(x)))</c>, <c>s = alpha/r</c> (alpha/sqrt(r) with rsLoRA). The frozen base keeps the keys
/// <c>weight</c> and, when the layer has one, <c>bias</c> (out), so pretrained weights load unchanged; the adapter adds
/// <c>lora_A.weight</c> (r, in) and <c>lora_B.weight</c> (out, r). B starts at zero, so an untrained adapter changes nothing.
/// Over GPT-2's transposed layout (weight (in, out), PEFT's <c>fan_in_fan_out</c>) the update is the same and merges transposed.
/// </summary>
/// <remarks>
/// The variants PEFT puts in the same layer:
/// <list type="bullet">
/// <item>DoRA (Liu et al. 2024, PEFT's <c>use_dora</c>): <c>lora_magnitude_vector</c> (out) m rescales each output row of
/// W + s B A to length m_i; the row norms carry no gradient (the paper's section 4.3, as PEFT).</item>
/// <item>PiSSA and OLoRA start the pair from W (its top-r singular triplets, or its QR) and PEFT subtracts that start
/// B₀A₀ from the base weight, leaving a residual. Here the base is left as it is and the start is subtracted in the update
/// instead, <c>W x + s (B A - B₀ A₀) x</c>, the same function of A and B: so the pretrained weight, quantized or not, never
/// changes, and the adapter is at every moment a plain LoRA pair of rank 2r over the original weight, <c>[A; A₀]</c> and
/// <c>[B, -B₀]</c>, which is what PEFT's <c>path_initial_model_for_weight_conversion</c> writes (<see cref="PlainPair"/>).</item>
/// </list>
/// Initialisations that read the pretrained weight (PiSSA, OLoRA, DoRA's magnitude) run in <see cref="InitializeFromBase"/>,
/// once the weights are loaded (the layer is built before they are).
/// </remarks>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>, IMergeableLinear, IStepLinear
{
    readonly Parameter? weight; // null over stored blocks (a quantized base)
    readonly QuantizedMatrix? stored;
    readonly Parameter? bias;
    readonly Linear lora_A;
    readonly Linear lora_B;
    readonly Parameter? lora_magnitude_vector; // DoRA only: (out), PEFT's key
    readonly FastDropoutModule lora_dropout;
    readonly bool transposed;
    readonly double dropout;
    bool merged;
    bool initialised;
    // Set after RegisterComponents, so none of these is a state-dict entry: PiSSA/OLoRA's starting pair, DoRA's factor
    // folded in by Merge, and DoRA's row norms kept while the layer stays in eval mode (they change only when A, B change).
    StartingPair? start;
    Tensor? mergedFactor;
    Tensor? normCache;

    sealed record StartingPair(Tensor A, Tensor B);

    /// <summary>Over an nn.Linear with a bias (BERT's layers).</summary>
    public LoraLinear(int inFeatures, int outFeatures, LoraOptions options) : this(new LinearSite("", inFeatures, outFeatures), options) { }

    public LoraLinear(LinearSite site, LoraOptions options) : base(nameof(LoraLinear))
    {
        InFeatures = site.InFeatures;
        OutFeatures = site.OutFeatures;
        Rank = options.R;
        Scaling = options.Scaling;
        Init = options.Init;
        dropout = options.Dropout;
        transposed = site.Transposed;
        (weight, bias) = site.NewParameters();
        stored = site.Stored;
        lora_A = nn.Linear(site.InFeatures, options.R, hasBias: false);
        lora_B = nn.Linear(options.R, site.OutFeatures, hasBias: false);
        lora_magnitude_vector = options.UseDora ? new Parameter(ones(site.OutFeatures)) : null;
        lora_dropout = new FastDropoutModule(options.Dropout);
        RegisterComponents();

        using var noGrad = no_grad();
        // PEFT's init_lora_weights=True: A kaiming-uniform(a=sqrt 5); "gaussian": A normal(0, 1/r); B zeros either way.
        if (options.Init == "gaussian") nn.init.normal_(lora_A.weight!, 0, 1.0 / options.R);
        else nn.init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
        nn.init.zeros_(lora_B.weight!);
        initialised = !options.UseDora && !options.InitFromWeight;
    }

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public int Rank { get; }

    /// <summary><c>alpha / r</c>, or <c>alpha / sqrt(r)</c> with rsLoRA.</summary>
    public double Scaling { get; }

    /// <summary>kaiming, gaussian, pissa or olora (<see cref="LoraOptions.Inits"/>).</summary>
    public string Init { get; }

    /// <summary>DoRA: a magnitude vector rescales the rows.</summary>
    public bool IsDora => lora_magnitude_vector is not null;

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

    /// <summary>DoRA's <c>lora_magnitude_vector</c> (out), or null.</summary>
    public Parameter? Magnitude => lora_magnitude_vector;

    /// <summary>The rank of <see cref="PlainPair"/>: r, or 2r when a PiSSA/OLoRA start is subtracted.</summary>
    public int PlainRank => start is null ? Rank : 2 * Rank;

    /// <param name="x">(..., in)</param>
    /// <returns>(..., out)</returns>
    public override Tensor forward(Tensor x)
    {
        if (!initialised) throw NotInitialised();
        using var scope = NewDisposeScope();
        var result = LinearSite.Apply(x, weight, stored, bias, transposed, training);
        if (merged || disabled) return result.MoveToOuterDisposeScope();
        // As PEFT: the adapter computes in lora_A's dtype (fp32 over a bf16 base), the sum is cast back to the
        // base result's dtype (added in place: in the promoted dtype, then stored in the result's). The scaling
        // multiplies the rank-r intermediate, not the (..., out) update: the same product, r/out of the work.
        var dropped = lora_dropout.forward(x);
        var update = LowRank(dropped);                          // (..., r) -> (..., out)
        if (lora_magnitude_vector is null)
        {
            result.add_(update);
            return result.MoveToOuterDisposeScope();
        }
        // DoRA as PEFT's DoraLinearVariant: m/||W + s B A|| rescales the base product and the update. The base term reuses
        // the base result (less its bias) unless dropout is active, when it is recomputed on the dropped-out input, as PEFT
        // does (in the input's dtype: dropout's mask is fp32, a bf16 base takes bf16); the sum is added out of place, since
        // the base result is part of the graph.
        var scale = lora_magnitude_vector / WeightNorm();                                  // (out)
        var baseResult = training && dropout > 0 ? LinearSite.Apply(dropped.to(x.dtype), weight, stored, null, transposed, training)
            : bias is null ? result : result - bias;
        var dora = (scale - 1) * baseResult.to(scale.dtype) + scale * update;             // (..., out)
        return (result + dora.to(result.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <c>s B A x</c> in lora_A's dtype, less <c>s B₀ A₀ x</c> after a PiSSA/OLoRA start (exactly zero while A, B are the
    /// start). A's product widens a narrower input itself (<see cref="WideningLinear"/>), so over bf16 activations the
    /// step keeps x in bf16 for A's gradient, not an fp32 copy of every adapted layer's input.
    /// </summary>
    Tensor LowRank(Tensor x)
    {
        var update = lora_B.forward(WideningLinear.Apply(x, lora_A.weight!) * Scaling);
        if (start is null) return update;
        var dtype = lora_A.weight!.dtype;
        var a0 = start.A.to(dtype);
        var b0 = start.B.to(dtype);
        return update - nn.functional.linear(nn.functional.linear(x.to(dtype), a0) * Scaling, b0);
    }

    /// <summary>
    /// Runs the initialisations that read the pretrained weight, once the weights are loaded: PiSSA's or OLoRA's starting
    /// pair (from a dense copy of W, or its blocks dequantized for the decomposition) and DoRA's magnitude, <c>||W||</c> per
    /// output row. Training calls it through <see cref="LoraMethod.Freeze"/>, loading through <see cref="LoraMethod.LoadAdapter"/>
    /// (which then overwrites the pair and magnitude with the saved ones). Does nothing the second time.
    /// </summary>
    public void InitializeFromBase()
    {
        if (initialised) return;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        if (Init is "pissa" or "olora")
        {
            var w = DenseOutIn();                                                           // (out, in) fp32
            var (a, b) = Init == "pissa" ? LoraInitialisation.Pissa(w, Rank, Scaling) : LoraInitialisation.Olora(w, Rank);
            lora_A.weight!.copy_(a);
            lora_B.weight!.copy_(b);
            // The start as the parameters now hold it (rounded to their dtype), so B A - B₀ A₀ is exactly zero.
            start = new StartingPair(lora_A.weight!.detach().clone().DetachFromDisposeScope(), lora_B.weight!.detach().clone().DetachFromDisposeScope());
        }
        if (lora_magnitude_vector is not null)
            lora_magnitude_vector.copy_(RowNorms());
        initialised = true;
        ClearNormCache();
    }

    /// <summary>Forgets DoRA's cached row norms (after A, B or the magnitude were overwritten, as when an adapter loads).</summary>
    public void ClearNormCache()
    {
        normCache?.Dispose();
        normCache = null;
    }

    /// <summary>
    /// The adapter as a plain LoRA pair over the original weight, new tensors: (A, B), or after a PiSSA/OLoRA start
    /// <c>([A; A₀], [B, -B₀])</c> of rank 2r (PEFT's conversion on save: ΔW = B A - B₀ A₀), so readers that know only
    /// plain LoRA (PEFT with <c>init_lora_weights=True</c>, llama.cpp) apply it to the unchanged base.
    /// </summary>
    public (Tensor A, Tensor B) PlainPair()
    {
        using var noGrad = no_grad();
        var a = lora_A.weight!.detach();
        var b = lora_B.weight!.detach();
        if (start is null) return (a.clone(), b.clone());
        return (cat([a, start.A.to(a.dtype)], 0), cat([b, -start.B.to(b.dtype)], 1));
    }

    /// <summary>
    /// The base (dense weight or stored blocks, bias) and the plain pair (<see cref="PlainPair"/>; none when merged or left
    /// out) with <see cref="Scaling"/>; null for DoRA, a transposed base, or an adapter not yet initialised.
    /// </summary>
    public bool CanStep => initialised && !transposed && lora_magnitude_vector is null;

    public StepLinearView? StepView()
    {
        if (!CanStep) return null;
        if (merged || disabled) return new StepLinearView(weight, stored, bias, null, null, 0);
        var (a, b) = PlainPair();
        return new StepLinearView(weight, stored, bias, a.to(ScalarType.Float32), b.to(ScalarType.Float32), Scaling);
    }

    /// <summary>s (B A - B₀ A₀): (out, r) @ (r, in) = (out, in), transposed to the base's layout.</summary>
    Tensor Delta()
    {
        var delta = DeltaOutIn();
        return transposed ? delta.t() : delta;
    }

    Tensor DeltaOutIn()
    {
        var product = lora_B.weight!.matmul(lora_A.weight!);
        if (start is not null) product = product - start.B.to(product.dtype).matmul(start.A.to(product.dtype));
        return product * Scaling;
    }

    /// <summary>The base weight (out, in) as a new float32 tensor: a copy, or the stored blocks dequantized.</summary>
    Tensor DenseOutIn()
    {
        var dense = LinearSite.DenseWeight(weight, stored, transposed);
        var outIn = transposed ? dense.t() : dense;
        return outIn.to(ScalarType.Float32);
    }

    /// <summary>DoRA's <c>||W + s B A||</c> per output row (out), without a graph; kept while in eval mode.</summary>
    Tensor WeightNorm()
    {
        if (!training && normCache is not null) return normCache;
        ClearNormCache();
        var norms = RowNorms();
        if (!training) normCache = norms.DetachFromDisposeScope();
        return norms;
    }

    Tensor RowNorms()
    {
        using var noGrad = no_grad();
        if (weight is not null)
        {
            using var scope = NewDisposeScope();
            var w = (transposed ? weight.t() : weight).to(ScalarType.Float32);
            return linalg.vector_norm(w + DeltaOutIn().to(ScalarType.Float32), dims: [1]).MoveToOuterDisposeScope();
        }
        // Over stored blocks: a tile of rows at a time, never the whole matrix dense.
        return LoraInitialisation.StoredRowNorms(stored!, (first, count) =>
        {
            var rows = lora_B.weight!.narrow(0, first, count).matmul(lora_A.weight!);
            if (start is not null) rows = rows - start.B.narrow(0, first, count).to(rows.dtype).matmul(start.A.to(rows.dtype));
            return (rows * Scaling).to(ScalarType.Float32);
        });
    }

    /// <summary>DoRA's merge (PEFT's): <c>W' = m / ||W + ΔW|| * (W + ΔW)</c> row by row, in float32, in the base's layout; returns W' and the factor.</summary>
    (Tensor Weight, Tensor Factor) DoraMerged(Tensor outIn)
    {
        var full = outIn + DeltaOutIn().to(ScalarType.Float32);                          // (out, in)
        var factor = lora_magnitude_vector!.detach().to(ScalarType.Float32) / linalg.vector_norm(full, dims: [1]);
        var merged = full * factor.unsqueeze(1);
        return (transposed ? merged.t() : merged, factor);
    }

    public void Merge()
    {
        if (merged) return;
        if (!initialised) throw NotInitialised();
        var dense = weight ?? throw StoredCannotMerge();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        if (lora_magnitude_vector is null) dense.add_(Delta());
        else
        {
            var (w, factor) = DoraMerged((transposed ? dense.t() : dense).to(ScalarType.Float32));
            dense.copy_(w);
            mergedFactor = factor.DetachFromDisposeScope();
        }
        merged = true;
    }

    public void Unmerge()
    {
        if (!merged) return;
        var dense = weight ?? throw StoredCannotMerge();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        if (lora_magnitude_vector is null) dense.sub_(Delta());
        else
        {
            // PEFT's unmerge: W = W' / factor - ΔW, with the factor the merge used.
            var outIn = (transposed ? dense.t() : dense).to(ScalarType.Float32) / mergedFactor!.unsqueeze(1) - DeltaOutIn().to(ScalarType.Float32);
            dense.copy_(transposed ? outIn.t() : outIn);
            mergedFactor.Dispose();
            mergedFactor = null;
        }
        merged = false;
    }

    public (Tensor Weight, Tensor? Bias) MergedWeights()
    {
        if (!initialised) throw NotInitialised();
        using var noGrad = no_grad();
        var dense = LinearSite.DenseWeight(weight, stored, transposed);
        if (merged) return (dense, bias?.clone());
        if (lora_magnitude_vector is null)
        {
            using var delta = Delta();
            return (dense.add_(delta), bias?.clone());
        }
        var mergedBias = bias?.clone(); // made before the scope, which would dispose it
        using var scope = NewDisposeScope();
        var (w, _) = DoraMerged((transposed ? dense.t() : dense).to(ScalarType.Float32));
        var result = w.to(dense.dtype).contiguous().MoveToOuterDisposeScope();
        dense.Dispose();
        return (result, mergedBias);
    }

    static InvalidOperationException StoredCannotMerge() => new(
        "a LoRA layer over quantized blocks cannot merge in place; exports merge into a dequantized copy (MergedWeights)");

    InvalidOperationException NotInitialised() => new(
        $"a LoRA layer with {(IsDora ? "DoRA" : "")}{(IsDora && Init is "pissa" or "olora" ? " and " : "")}{(Init is "pissa" or "olora" ? $"--lora-init {Init}" : "")} " +
        "starts from its pretrained weight: call LoraMethod.Freeze (training) or LoadAdapter once the weights are loaded");
}
