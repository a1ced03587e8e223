using SharpTune.Models.Common;
using SharpTune.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>Dense, dropout, residual, LayerNorm: HF <c>BertSelfOutput</c> and <c>BertOutput</c> share this shape.</summary>
public sealed class BertResidualOutput : nn.Module
{
    readonly nn.Module<Tensor, Tensor> dense;
    readonly LayerNorm LayerNorm;
    readonly FastDropoutModule dropout;

    public BertResidualOutput(BertConfig config, int inputSize, LinearFactory linears, string path) : base(nameof(BertResidualOutput))
    {
        dense = linears(new LinearSite($"{path}.dense", inputSize, config.HiddenSize));
        LayerNorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps);
        dropout = new FastDropoutModule(config.HiddenDropoutProb);
        RegisterComponents();
    }

    public Tensor forward(Tensor hidden, Tensor residual) =>
        LayerNorm.forward(dropout.forward(dense.forward(hidden)) + residual);
}

/// <summary>Self-attention and its output projection: HF <c>BertAttention</c> (keys <c>attention.self.*</c>, <c>attention.output.*</c>).</summary>
public sealed class BertAttention : nn.Module
{
    readonly BertSelfAttention self;
    readonly BertResidualOutput output;

    public BertAttention(BertConfig config, LinearFactory linears, string path) : base(nameof(BertAttention))
    {
        self = new BertSelfAttention(config, linears, $"{path}.self");
        output = new BertResidualOutput(config, config.HiddenSize, linears, $"{path}.output");
        RegisterComponents();
    }

    public Tensor forward(Tensor hidden, Tensor? additiveMask, KeyValuePrefix? prefix) =>
        output.forward(self.forward(hidden, additiveMask, prefix), hidden);
}

/// <summary>The feed-forward expansion: HF <c>BertIntermediate</c> (key <c>intermediate.dense</c>).</summary>
public sealed class BertIntermediate : nn.Module
{
    readonly nn.Module<Tensor, Tensor> dense;
    readonly Func<Tensor, Tensor> activation;

    public BertIntermediate(BertConfig config, LinearFactory linears, string path) : base(nameof(BertIntermediate))
    {
        dense = linears(new LinearSite($"{path}.dense", config.HiddenSize, config.IntermediateSize));
        activation = Activations.Get(config.HiddenAct);
        RegisterComponents();
    }

    public Tensor forward(Tensor hidden) => activation(dense.forward(hidden)); // (B, T, I)
}

/// <summary>One transformer block: HF <c>BertLayer</c>.</summary>
public sealed class BertLayer : nn.Module
{
    readonly BertAttention attention;
    readonly BertIntermediate intermediate;
    readonly BertResidualOutput output;

    public BertLayer(BertConfig config, LinearFactory linears, string path) : base(nameof(BertLayer))
    {
        attention = new BertAttention(config, linears, $"{path}.attention");
        intermediate = new BertIntermediate(config, linears, $"{path}.intermediate");
        output = new BertResidualOutput(config, config.IntermediateSize, linears, $"{path}.output");
        RegisterComponents();
    }

    public Tensor forward(Tensor hidden, Tensor? additiveMask, KeyValuePrefix? prefix)
    {
        var attended = attention.forward(hidden, additiveMask, prefix);
        return output.forward(intermediate.forward(attended), attended);
    }
}
