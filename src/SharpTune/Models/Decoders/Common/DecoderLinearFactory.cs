using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// Creates each Linear layer of a decoder, given its Hugging Face module path (such as
/// <c>model.layers.3.self_attn.q_proj</c>). Methods that wrap Linear layers (LoRA, IA3) pass their own factory when
/// the model is built, since TorchSharp cannot swap submodules once registered. A replacement must keep the
/// parameters <c>weight</c> (out, in) and, when <c>bias</c> is true, <c>bias</c> (out) under those names.
/// </summary>
public delegate nn.Module<Tensor, Tensor> DecoderLinearFactory(string path, int inFeatures, int outFeatures, bool bias);

public static class DecoderLinears
{
    /// <summary>Plain <c>nn.Linear</c> everywhere.</summary>
    public static DecoderLinearFactory Plain { get; } = (_, inFeatures, outFeatures, bias) => nn.Linear(inFeatures, outFeatures, hasBias: bias);
}
