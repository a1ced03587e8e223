using SharpTune.Models.Quantized;
using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// One Linear layer a model asks its <see cref="LinearFactory"/> for. <paramref name="Path"/> is the layer's Hugging Face
/// module path inside the model that builds it (<c>encoder.layer.3.attention.self.query</c>,
/// <c>model.layers.3.self_attn.q_proj</c>, <c>transformer.h.3.attn.c_attn</c>).
/// </summary>
/// <param name="Transposed">The weight is stored (in, out) and applied as <c>x · W + b</c>: GPT-2's Conv1D, PEFT's
/// <c>fan_in_fan_out</c>. Otherwise (out, in) as <c>nn.Linear</c>.</param>
public sealed record LinearSite(string Path, int InFeatures, int OutFeatures, bool Bias = true, bool Transposed = false)
{
    /// <summary>
    /// The layer's pretrained weight kept in its file's blocks ((out, in) whatever <see cref="Transposed"/> says), or null
    /// for a dense <c>weight</c> parameter. A layer built over it has no <c>weight</c> key: the blocks are its weight,
    /// frozen, and products go through <see cref="QuantizedOps"/>.
    /// </summary>
    public QuantizedMatrix? Stored { get; init; }

    /// <summary>
    /// A frozen base for a wrapping layer: <c>weight</c> in the site's layout (null over <see cref="Stored"/> blocks) and
    /// <c>bias</c> (out) when it has one, with nn.Linear's initialisation (pretrained weights replace it).
    /// </summary>
    public (Parameter? Weight, Parameter? Bias) NewParameters()
    {
        using var noGrad = no_grad();
        if (Stored is not null)
        {
            if (Stored.Rows != OutFeatures || Stored.Columns != InFeatures)
                throw new ArgumentException($"{Path}: the stored weight is ({Stored.Rows}, {Stored.Columns}), the layer ({OutFeatures}, {InFeatures})");
            return (null, Bias ? new Parameter(zeros(OutFeatures)) : null);
        }
        var weight = empty(OutFeatures, InFeatures);
        nn.init.kaiming_uniform_(weight, a: Math.Sqrt(5));
        if (Transposed) weight = weight.t().contiguous();
        Parameter? bias = null;
        if (Bias)
        {
            double bound = 1 / Math.Sqrt(InFeatures);
            bias = new Parameter(empty(OutFeatures).uniform_(-bound, bound));
        }
        return (new Parameter(weight), bias);
    }

    /// <summary><c>x W^T + b</c> for the site's layout: (..., in) to (..., out).</summary>
    public static Tensor Apply(Tensor x, Tensor weight, Tensor? bias, bool transposed) =>
        transposed ? (bias is null ? x.matmul(weight) : x.matmul(weight) + bias) : nn.functional.linear(x, weight, bias);

    /// <summary>
    /// <c>x W^T + b</c> over a dense weight in the site's layout, or over stored blocks when <paramref name="weight"/> is
    /// null (activations rounded as ggml rounds them when <paramref name="training"/> is false: see <see cref="QuantizedOps.Linear"/>).
    /// </summary>
    public static Tensor Apply(Tensor x, Tensor? weight, QuantizedMatrix? stored, Tensor? bias, bool transposed, bool training) =>
        weight is not null ? Apply(x, weight, bias, transposed)
        : QuantizedOps.Linear(x, stored ?? throw new InvalidOperationException("a Linear layer has neither a weight nor stored blocks"), bias, !training);

    /// <summary>
    /// The weight as a new dense tensor in the site's layout: a copy of <paramref name="weight"/>, or the stored blocks
    /// dequantized to float32 (for merges and exports).
    /// </summary>
    public static Tensor DenseWeight(Tensor? weight, QuantizedMatrix? stored, bool transposed)
    {
        if (weight is not null) return weight.detach().clone();
        var dense = QuantizedOps.Dequantize(stored ?? throw new InvalidOperationException("a Linear layer has neither a weight nor stored blocks"));
        if (!transposed) return dense;
        using (dense) return dense.t().contiguous();
    }
}

/// <summary>
/// Creates each Linear layer of a model. Methods that wrap Linear layers (LoRA, IA3) pass their own factory when the
/// model is built, since TorchSharp cannot swap submodules once registered. A replacement keeps the parameters
/// <c>weight</c> (in the site's layout) and, when the site has one, <c>bias</c> (out) under those names, so pretrained
/// weights load by key.
/// </summary>
public delegate nn.Module<Tensor, Tensor> LinearFactory(LinearSite site);

/// <summary>
/// What a parameter-efficient method needs to know of the network it adapts, whatever its family: sizes, every
/// Linear layer it builds, and the family's names (<see cref="BackboneNames"/>). Implemented by each family's config
/// record, so methods validate their options before any weight is read.
/// </summary>
public interface IBackboneShape
{
    /// <summary>bert, llama, qwen2, gpt2.</summary>
    string Family { get; }
    int HiddenSize { get; }
    int LayerCount { get; }
    int AttentionHeads { get; }
    /// <summary>Key/value heads: as many as query heads unless attention is grouped.</summary>
    int KeyValueHeadCount { get; }
    int HeadSize { get; }
    /// <summary>Positions the model reads (its context length).</summary>
    int MaxPositions { get; }
    int Vocabulary { get; }

    /// <summary>Every Linear the model asks its factory for, in build order (an encoder's pooler included).</summary>
    IReadOnlyList<LinearSite> LinearSites { get; }

    BackboneNames Names { get; }

    /// <summary>
    /// Whether a key/value prefix (prefix tuning, P-tuning v2) moves the real tokens' positions: a decoder's real tokens
    /// follow the prefix (positions P..P+T-1), a BERT encoder's keep 0..T-1.
    /// </summary>
    bool PrefixTakesPositions => true;

    /// <summary>Rows of a learned position-embedding table (BERT, GPT-2), 0 where positions are rotary.</summary>
    int LearnedPositions => 0;

    /// <summary>Whether the model's norms have a bias as well as a weight (LayerNorm), not a weight alone (RMSNorm).</summary>
    bool NormsHaveBias => false;

    /// <summary>Whether training keeps each layer's attention scores and probabilities (attention with dropout through the reference math, as BERT's), not a fused kernel's.</summary>
    bool AttentionScoresHeld => false;
}

/// <summary>
/// A family's parameter names and PEFT's defaults for it, in one place (PEFT's
/// <c>TRANSFORMERS_MODELS_TO_*_TARGET_MODULES_MAPPING</c> tables).
/// </summary>
/// <param name="PeftPrefix">What PEFT sees in front of a <see cref="LinearSite.Path"/> in the model it wraps:
/// <c>bert.</c> inside <c>BertForSequenceClassification</c>, nothing in <c>LlamaForCausalLM</c>.</param>
/// <param name="ParameterPrefix">Where the backbone's parameters sit among the tuned model's (<c>bert.</c>; a causal
/// LM's are its own: empty).</param>
/// <param name="EmbeddingPrefixes">Parameter-name prefixes of the input embeddings.</param>
/// <param name="LayerPrefix">The prefix before a layer's index (<c>bert.encoder.layer.</c>, <c>model.layers.</c>).</param>
/// <param name="LoraTargets">LoRA's default <c>target_modules</c>.</param>
/// <param name="Ia3Targets">IA3's default <c>target_modules</c>.</param>
/// <param name="Ia3FeedForward">IA3's default <c>feedforward_modules</c>.</param>
public sealed record BackboneNames(
    string PeftPrefix, string ParameterPrefix, IReadOnlyList<string> EmbeddingPrefixes, string LayerPrefix,
    IReadOnlyList<string> LoraTargets, IReadOnlyList<string> Ia3Targets, IReadOnlyList<string> Ia3FeedForward)
{
    /// <summary>The layer a parameter belongs to, or null for parameters outside the layers.</summary>
    public int? LayerIndex(string parameterName)
    {
        if (!parameterName.StartsWith(LayerPrefix, StringComparison.Ordinal)) return null;
        int end = parameterName.IndexOf('.', LayerPrefix.Length);
        return end > LayerPrefix.Length && int.TryParse(parameterName.AsSpan(LayerPrefix.Length, end - LayerPrefix.Length), out int i) ? i : null;
    }

    public bool IsEmbedding(string parameterName) => EmbeddingPrefixes.Any(p => parameterName.StartsWith(p, StringComparison.Ordinal));

    public bool IsBackbone(string parameterName) => parameterName.StartsWith(ParameterPrefix, StringComparison.Ordinal);

    /// <summary>What a user should know when naming this family's targets (a name that matches several layers), or null.</summary>
    public string? TargetNote { get; init; }
}

/// <summary>
/// A Linear layer whose weight is stored transposed, (in, out), applied as <c>y = x · W + b</c>: GPT-2's "Conv1D"
/// (HF <c>pytorch_utils.Conv1D</c>, keys <c>weight</c>, <c>bias</c>).
/// </summary>
public sealed class TransposedLinear : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter? bias;

    public TransposedLinear(int inFeatures, int outFeatures, bool hasBias = true) : base("Conv1D")
    {
        weight = new Parameter(empty(inFeatures, outFeatures).normal_(0, 0.02));
        if (hasBias) bias = new Parameter(zeros(outFeatures));
        RegisterComponents();
    }

    public Parameter Weight => weight;
    public Parameter? Bias => bias;

    /// <param name="input">(..., in)</param>
    /// <returns>(..., out)</returns>
    public override Tensor forward(Tensor input)
    {
        var shape = input.shape[..^1].Append(weight.shape[1]).ToArray();
        var flat = input.reshape(-1, input.shape[^1]);
        return (bias is null ? flat.matmul(weight) : addmm(bias, flat, weight, 1, 1)).view(shape);
    }
}
