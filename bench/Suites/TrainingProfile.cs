using SharpTune.Models.Common;
using SharpTune.Models.Bert;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites;

/// <summary>One part of a training step: what it is, how many times a step runs it, and its time per step.</summary>
public sealed record ProfilePart(string Key, string Description, double SecondsPerStep, double? Gflops = null);

/// <summary>
/// Where the time of one full fine-tuning step of a BERT encoder goes. TorchSharp has no profiler, so each
/// kind of work a step does is timed on its own, forward and backward, at the step's real shapes and with
/// the model's own sizes, and multiplied by how often a step does it:
/// matrix products of the Linear layers, attention (softmax, mask, dropout and its two products),
/// LayerNorm, GELU, dropout and residual adds, the embeddings, the optimizer (clipping, AdamW, zeroing),
/// and building the batch. The fixed cost of the framework (autograd bookkeeping, managed-to-native calls,
/// allocation) is the step of the same model on a batch of one 8-token sequence, where arithmetic is
/// negligible. What the parts do not account for is reported as the remainder, never hidden.
/// </summary>
public static class TrainingProfile
{
    /// <param name="bf16">Profile the bf16 mixed-precision step: products, attention, GELU and the dropouts after
    /// products in bf16 (with the casts into the products timed with them), the rest fp32.</param>
    public static List<ProfilePart> Measure(BertConfig config, TaskModelStep step, int batch, int length, int repeats, bool bf16 = false)
    {
        ScalarType? half = bf16 ? ScalarType.BFloat16 : null;
        var low = half ?? ScalarType.Float32;
        int h = config.HiddenSize, inter = config.IntermediateSize, layers = config.NumHiddenLayers;
        int heads = config.NumAttentionHeads, headSize = config.HeadSize;
        long tokens = (long)batch * length;
        var parts = new List<ProfilePart>();

        // Matrix products: per layer 4 (H -> H), 1 (H -> I) and 1 (I -> H), forward and both backward products.
        double linears = layers * (4 * LinearSeconds(tokens, h, h, repeats, half)
            + LinearSeconds(tokens, h, inter, repeats, half) + LinearSeconds(tokens, inter, h, repeats, half, inputType: low));
        double linearFlops = 6.0 * tokens * layers * (4.0 * h * h + 2.0 * h * inter);
        parts.Add(new("linears", $"matrix products of the {6 * layers} encoder Linear layers (forward + 2 backward products{(bf16 ? "; bf16 with the casts" : "")})", linears, linearFlops / linears / 1e9));

        double attention = layers * AttentionSeconds(batch, heads, length, headSize, config.AttentionProbsDropoutProb, repeats, low);
        double attentionFlops = 3.0 * layers * batch * 4.0 * length * length * h;
        parts.Add(new("attention", $"attention as training runs it ({layers} layers: QK^T, mask, fp32 softmax, dropout p={config.AttentionProbsDropoutProb}, x V)", attention, attentionFlops / attention / 1e9));
        double attentionNoDropout = layers * AttentionSeconds(batch, heads, length, headSize, 0.0, repeats, low);
        parts.Add(new("attention_dropout", "  of which the dropout of the attention probabilities (the same without it, subtracted)", attention - attentionNoDropout));
        double fused = layers * AttentionSeconds(batch, heads, length, headSize, null, repeats, low);
        parts.Add(new("attention_fused", "  for comparison: libtorch's fused attention kernel without dropout (what evaluation runs)", fused));

        double layerNorm = (2 * layers + 1) * ElementwiseSeconds(tokens, h, x => nn.functional.layer_norm(x, [h], null, null, config.LayerNormEps), repeats);
        parts.Add(new("layernorm", $"{2 * layers + 1} LayerNorms over (tokens, {h})", layerNorm));
        double gelu = layers * ElementwiseSeconds(tokens, inter, x => x.gelu(), repeats, low);
        parts.Add(new("gelu", $"{layers} GELUs over (tokens, {inter}){(bf16 ? " in bf16" : "")}", gelu));
        double dropout = 2 * layers * ElementwiseSeconds(tokens, h, x => FastDropout.Apply(x, config.HiddenDropoutProb, true), repeats, low)
            + ElementwiseSeconds(tokens, h, x => FastDropout.Apply(x, config.HiddenDropoutProb, true), repeats);
        double libtorchDropout = (2 * layers + 1) * ElementwiseSeconds(tokens, h, x => nn.functional.dropout(x, config.HiddenDropoutProb, true), repeats, low);
        parts.Add(new("dropout", $"{2 * layers + 1} hidden-state dropouts over (tokens, {h}){(bf16 ? $", {2 * layers} of them on bf16" : "")}", dropout));
        parts.Add(new("dropout_libtorch", "  for comparison: the same dropouts with libtorch's own dropout", libtorchDropout));
        double residual = 2 * layers * ElementwiseSeconds(tokens, h, x => x + x, repeats)
            + layers * ElementwiseSeconds(tokens, h, x => x.view(batch, heads, length, headSize).transpose(1, 2).reshape(batch, length, h), repeats);
        parts.Add(new("residual_reshape", "residual adds and the attention heads' reshape copies", residual));

        double embeddings = EmbeddingSeconds(config, batch, length, repeats);
        parts.Add(new("embeddings", "word + position + type embedding lookups and their gradients (dense, vocabulary-sized)", embeddings));

        var (clip, optimizerStep, zero) = step.OptimizerSeconds(repeats);
        parts.Add(new("clip_grad_norm", "gradient clipping (norm over every gradient)", clip));
        parts.Add(new("adamw", "AdamW update of every trainable parameter", optimizerStep));
        parts.Add(new("zero_grad", "zeroing the gradients", zero));
        parts.Add(new("collate", "building the batch tensors from tokenized examples", step.CollateSeconds(repeats)));

        double fixedCost = step.SmallForwardBackwardSeconds(repeats);
        parts.Add(new("framework", "fixed cost per step: forward and backward of one 8-token sequence (autograd, managed-to-native calls, allocation)", fixedCost));

        double whole = step.StepSeconds(repeats);
        double accounted = parts.Where(p => !p.Description.StartsWith("  ", StringComparison.Ordinal)).Sum(p => p.SecondsPerStep);
        parts.Add(new("remainder", "the measured step minus the sum of the parts above (negative: the parts overlap)", whole - accounted));
        parts.Add(new("step", $"the measured full step (batch {batch} x {length})", whole));
        return parts;
    }

    /// <param name="half">Cast input, weight and bias to this type inside the timed region, as a bf16 Linear does.</param>
    /// <param name="inputType">The type the input arrives in (bf16 when the op before it ran in bf16).</param>
    static double LinearSeconds(long tokens, int input, int output, int repeats, ScalarType? half = null, ScalarType inputType = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        var x = randn(tokens, input).to(inputType).requires_grad_(true);
        var w = (randn(output, input) * 0.02).requires_grad_(true);
        var b = zeros(output).requires_grad_(true);
        var g = randn(tokens, output);
        return Timing.Seconds(() =>
        {
            using var inner = NewDisposeScope();
            var y = half is { } t ? nn.functional.linear(x.to(t), w.to(t), b.to(t)) : nn.functional.linear(x, w, b);
            autograd.grad([y], [x, w, b], [g.to(y.dtype)]);
        }, repeats);
    }

    /// <param name="dropout">The model's attention with this dropout, or null for libtorch's fused kernel without dropout.</param>
    static double AttentionSeconds(int batch, int heads, int length, int headSize, double? dropout, int repeats, ScalarType type)
    {
        using var scope = NewDisposeScope();
        var q = randn(batch, heads, length, headSize).to(type).requires_grad_(true);
        var k = randn(batch, heads, length, headSize).to(type).requires_grad_(true);
        var v = randn(batch, heads, length, headSize).to(type).requires_grad_(true);
        var g = randn(batch, heads, length, headSize).to(type);
        return Timing.Seconds(() =>
        {
            using var inner = NewDisposeScope();
            var y = dropout is { } p
                ? BertSelfAttention.AttentionWithDropout(q, k, v, null, p)
                : nn.functional.scaled_dot_product_attention(q, k, v);
            autograd.grad([y], [q, k, v], [g]);
        }, repeats);
    }

    static double ElementwiseSeconds(long tokens, int width, Func<Tensor, Tensor> op, int repeats, ScalarType type = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        var x = randn(tokens, width).to(type).requires_grad_(true);
        var g = randn(tokens, width).to(type);
        return Timing.Seconds(() =>
        {
            using var inner = NewDisposeScope();
            var y = op(x);
            autograd.grad([y], [x], [g.to(y.dtype).view(y.shape)]);
        }, repeats);
    }

    static double EmbeddingSeconds(BertConfig config, int batch, int length, int repeats)
    {
        using var scope = NewDisposeScope();
        var words = nn.Embedding(config.VocabSize, config.HiddenSize);
        var positions = nn.Embedding(config.MaxPositionEmbeddings, config.HiddenSize);
        var types = nn.Embedding(config.TypeVocabSize, config.HiddenSize);
        var ids = randint(0, config.VocabSize, [batch, length], dtype: ScalarType.Int64);
        var positionIds = arange(length, dtype: ScalarType.Int64).expand(batch, length);
        var typeIds = zeros(batch, length, ScalarType.Int64);
        var g = randn(batch, length, config.HiddenSize);
        return Timing.Seconds(() =>
        {
            using var inner = NewDisposeScope();
            var y = words.forward(ids) + positions.forward(positionIds) + types.forward(typeIds);
            autograd.grad([y], [words.weight!, positions.weight!, types.weight!], [g]);
        }, repeats);
    }
}
