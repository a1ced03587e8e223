using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>
/// A Linear layer whose output is a plain product <c>x W^T + b</c> followed by an adjustment of that product
/// (LoRA adds its low-rank term, IA3 scales the output, bf16 keeps the product in bf16). Self-attention runs
/// the products of query, key and value as one when all three are plain or fusable, then lets each finish
/// its own part, so methods that wrap these layers keep the faster fused product.
/// </summary>
public interface IFusableLinear
{
    /// <summary>(out, in): the weight of the product.</summary>
    Tensor Weight { get; }

    /// <summary>(out): the bias of the product.</summary>
    Tensor Bias { get; }

    /// <summary>False when the layer changes its input before the product (IA3 on a feed-forward layer).</summary>
    bool CanFuse { get; }

    /// <summary>The layer's output, given its input and the product <c>x W^T + b</c> of that input.</summary>
    Tensor Finish(Tensor input, Tensor product);
}
