using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>
/// Creates each Linear layer of the encoder, given its Hugging Face module path (such as
/// <c>encoder.layer.3.attention.self.query</c>). Methods that wrap Linear layers (LoRA, IA3) pass their
/// own factory when the model is built, since TorchSharp cannot swap submodules once registered. A
/// replacement must keep the parameters <c>weight</c> (out, in) and <c>bias</c> (out) under those names.
/// </summary>
public delegate nn.Module<Tensor, Tensor> LinearFactory(string path, int inFeatures, int outFeatures);

public static class LinearFactories
{
    /// <summary>Plain <c>nn.Linear</c> everywhere.</summary>
    public static LinearFactory Plain { get; } = (_, inFeatures, outFeatures) => nn.Linear(inFeatures, outFeatures);
}
