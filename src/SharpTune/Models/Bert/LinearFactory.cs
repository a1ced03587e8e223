using TorchSharp.Modules;
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

    /// <summary>bf16 matrix products over fp32 master weights (mixed precision on CPU).</summary>
    public static LinearFactory Bf16 { get; } = (_, inFeatures, outFeatures) => new Bf16Linear(inFeatures, outFeatures);

    /// <summary>
    /// The module path of every Linear layer the encoder asks its factory for, in build order, so a method can
    /// check its target names before building. The pooler is listed though a model may be built without it.
    /// </summary>
    public static IReadOnlyList<string> Paths(BertConfig config)
    {
        var paths = new List<string>();
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string layer = $"encoder.layer.{i}";
            paths.AddRange([$"{layer}.attention.self.query", $"{layer}.attention.self.key", $"{layer}.attention.self.value",
                $"{layer}.attention.output.dense", $"{layer}.intermediate.dense", $"{layer}.output.dense"]);
        }
        paths.Add("pooler.dense");
        return paths;
    }
}

/// <summary>The frozen base that LoRA and IA3 layers keep under the pretrained keys.</summary>
public static class LinearBase
{
    /// <summary><c>weight</c> (out, in) and <c>bias</c> (out) with nn.Linear's own initialisation; pretrained weights replace it.</summary>
    public static (Parameter Weight, Parameter Bias) Create(int inFeatures, int outFeatures)
    {
        var weight = new Parameter(empty(outFeatures, inFeatures));
        var bias = new Parameter(empty(outFeatures));
        using var noGrad = no_grad();
        nn.init.kaiming_uniform_(weight, a: Math.Sqrt(5));
        double bound = 1 / Math.Sqrt(inFeatures);
        nn.init.uniform_(bias, -bound, bound);
        return (weight, bias);
    }
}
