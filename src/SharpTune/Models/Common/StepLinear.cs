using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Common;

/// <summary>
/// A wrapped Linear layer that tells a decode step (<c>Models.Decoders.StepDecoder</c>) how to compute it in eval mode:
/// <c>y = x Wᵀ + b + s·B(A x)</c>. Methods whose layers fit that form (LoRA and its plain-pair variants) implement it; a
/// layer that does not (DoRA's rescaled rows) answers null, and the model's own forward computes it.
/// </summary>
public interface IStepLinear
{
    /// <summary>Whether a step can compute the layer as it is now (what <see cref="StepView"/> answers, without making its tensors).</summary>
    bool CanStep { get; }

    /// <summary>The layer's parts, or null when a step cannot compute it (<see cref="CanStep"/>). The caller disposes what it gets.</summary>
    StepLinearView? StepView();
}

/// <summary>
/// What <see cref="IStepLinear.StepView"/> gives: the base's dense weight (out, in) or its stored blocks, its bias, and an
/// optional low-rank pair, <paramref name="A"/> (r, in) and <paramref name="B"/> (out, r) float32, new tensors this view
/// owns, with the scaling <paramref name="Scaling"/> that multiplies the rank-r intermediate.
/// </summary>
public sealed record StepLinearView(Parameter? Weight, QuantizedMatrix? Stored, Parameter? Bias, Tensor? A, Tensor? B, double Scaling) : IDisposable
{
    public void Dispose()
    {
        A?.Dispose();
        B?.Dispose();
    }
}
