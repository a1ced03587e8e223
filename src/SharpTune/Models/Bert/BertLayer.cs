using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>Dense, dropout, residual, LayerNorm: HF <c>BertSelfOutput</c> and <c>BertOutput</c> share this shape.</summary>
public sealed class BertResidualOutput : nn.Module
{
    readonly Linear dense;
    readonly LayerNorm LayerNorm;
    readonly Dropout dropout;

    public BertResidualOutput(BertConfig config, int inputSize) : base(nameof(BertResidualOutput))
    {
        dense = nn.Linear(inputSize, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps);
        dropout = nn.Dropout(config.HiddenDropoutProb);
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

    public BertAttention(BertConfig config) : base(nameof(BertAttention))
    {
        self = new BertSelfAttention(config);
        output = new BertResidualOutput(config, config.HiddenSize);
        RegisterComponents();
    }

    public Tensor forward(Tensor hidden, Tensor? additiveMask, KeyValuePrefix? prefix) =>
        output.forward(self.forward(hidden, additiveMask, prefix), hidden);
}

/// <summary>The feed-forward expansion: HF <c>BertIntermediate</c> (key <c>intermediate.dense</c>).</summary>
public sealed class BertIntermediate : nn.Module
{
    readonly Linear dense;
    readonly Func<Tensor, Tensor> activation;

    public BertIntermediate(BertConfig config) : base(nameof(BertIntermediate))
    {
        dense = nn.Linear(config.HiddenSize, config.IntermediateSize);
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

    public BertLayer(BertConfig config) : base(nameof(BertLayer))
    {
        attention = new BertAttention(config);
        intermediate = new BertIntermediate(config);
        output = new BertResidualOutput(config, config.IntermediateSize);
        RegisterComponents();
    }

    public Tensor forward(Tensor hidden, Tensor? additiveMask, KeyValuePrefix? prefix)
    {
        var attended = attention.forward(hidden, additiveMask, prefix);
        return output.forward(intermediate.forward(attended), attended);
    }
}
