using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Quantized;

/// <summary>
/// A frozen Linear layer whose weight stays in its file's blocks (<see cref="LinearSite.Stored"/>): <c>y = x Wᵀ + b</c>
/// through <see cref="QuantizedOps"/>. Its only key is <c>bias</c> (out) when the layer has one; the weight is not a
/// parameter, so nothing trains it and no optimizer or state dict sees it.
/// </summary>
public sealed class StoredLinear : nn.Module<Tensor, Tensor>
{
    readonly Parameter? bias;
    readonly QuantizedMatrix stored;

    public StoredLinear(LinearSite site) : base(nameof(StoredLinear))
    {
        stored = site.Stored ?? throw new ArgumentException($"{site.Path}: no stored weight to build a {nameof(StoredLinear)} over");
        (_, bias) = site.NewParameters();
        RegisterComponents();
    }

    /// <summary>The weight's blocks, (out, in).</summary>
    public QuantizedMatrix Weight => stored;

    public Parameter? Bias => bias;

    /// <param name="x">(..., in)</param>
    /// <returns>(..., out)</returns>
    public override Tensor forward(Tensor x) => QuantizedOps.Linear(x, stored, bias, roundActivations: !training);
}
