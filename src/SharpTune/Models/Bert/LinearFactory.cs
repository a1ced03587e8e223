using SharpTune.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>
/// The encoder's Linear layers. The encoder asks a <see cref="LinearFactory"/> for each by its Hugging Face module
/// path (such as <c>encoder.layer.3.attention.self.query</c>); every BERT Linear has a bias.
/// </summary>
public static class LinearFactories
{
    /// <summary>Plain <c>nn.Linear</c> everywhere.</summary>
    public static LinearFactory Plain { get; } = site => nn.Linear(site.InFeatures, site.OutFeatures);

    /// <summary>bf16 matrix products over fp32 master weights (mixed precision on CPU).</summary>
    public static LinearFactory Bf16 { get; } = site => new Bf16Linear(site.InFeatures, site.OutFeatures);

    /// <summary>
    /// The module path of every Linear layer the encoder asks its factory for, in build order, so a method can
    /// check its target names before building. The pooler is listed though a model may be built without it.
    /// </summary>
    public static IReadOnlyList<string> Paths(BertConfig config) => Sites(config).Select(s => s.Path).ToList();

    /// <summary>Every Linear layer of the encoder with its sizes, in build order (the pooler last).</summary>
    public static IReadOnlyList<LinearSite> Sites(BertConfig config)
    {
        int h = config.HiddenSize, inner = config.IntermediateSize;
        var sites = new List<LinearSite>();
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string layer = $"encoder.layer.{i}";
            sites.AddRange([new($"{layer}.attention.self.query", h, h), new($"{layer}.attention.self.key", h, h),
                new($"{layer}.attention.self.value", h, h), new($"{layer}.attention.output.dense", h, h),
                new($"{layer}.intermediate.dense", h, inner), new($"{layer}.output.dense", inner, h)]);
        }
        sites.Add(new("pooler.dense", h, h));
        return sites;
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
