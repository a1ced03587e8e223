using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Common;

/// <summary>
/// The Linear layers a family builds when no method wraps them: a <see cref="LinearFactory"/> is asked for each by
/// its Hugging Face module path and sizes.
/// </summary>
public static class LinearFactories
{
    /// <summary>Plain <c>nn.Linear</c> everywhere.</summary>
    public static LinearFactory Plain { get; } = site => nn.Linear(site.InFeatures, site.OutFeatures);

    /// <summary>bf16 matrix products over fp32 master weights (mixed precision on CPU).</summary>
    public static LinearFactory Bf16 { get; } = site => new Bf16Linear(site.InFeatures, site.OutFeatures);
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
