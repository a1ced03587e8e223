using SharpTune.Models.Decoders.Common;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders;

/// <summary>
/// The causal language-modelling loss computed from the final hidden states without materialising the (B, T, V)
/// logits: the head and the cross-entropy run over chunks of tokens, and each chunk's logits are recomputed in the
/// backward pass (<see cref="ActivationCheckpoint"/>), as Unsloth's and Liger-Kernel's fused losses do. At Qwen2.5's
/// 151,936 tokens, fp32 logits for 4 x 512 tokens take 1.2 GiB and their gradient as much again; here one chunk's.
/// </summary>
/// <remarks>
/// The loss is transformers' <c>ForCausalLMLoss</c> (<c>cross_entropy(logits.float(), labels, ignore_index=-100)</c>):
/// the logits of a chunk are computed in the head weight's dtype and cast to float32 before the softmax, as
/// <see cref="ICausalLanguageModel.Forward"/> returns them. Only the positions with a label take part: masked prompt
/// tokens and padding (label -100) cost no head product at all.
/// </remarks>
public static class CausalLmLoss
{
    /// <summary>The label of a position that takes no part in the loss (PyTorch's <c>ignore_index</c> default).</summary>
    public const long IgnoreIndex = -100;

    /// <summary>
    /// The size of one chunk's float32 logits by default: 64 MiB (110 tokens at a 151,936-token vocabulary). A chunk's
    /// backward holds about four times that (bf16 and fp32 logits, log-softmax, their gradients).
    /// </summary>
    public const long DefaultChunkBytes = 64L << 20;

    /// <summary>
    /// Mean cross-entropy over the labelled positions (a float32 scalar), equal to
    /// <c>cross_entropy(linear(hidden, headWeight, headBias).float().view(-1, V), shifted.view(-1), ignore_index: -100)</c>.
    /// With no labelled position it is 0 (connected to the graph, so backward gives zero gradients) where PyTorch gives NaN.
    /// </summary>
    /// <param name="hidden">(B, T, H) final hidden states (<see cref="ILanguageModelHead.ForwardHidden"/>), any float dtype.</param>
    /// <param name="headWeight">(V, H) output projection (<see cref="ILanguageModelHead.HeadWeight"/>); the hidden states are cast to its dtype.</param>
    /// <param name="headBias">(V) or null.</param>
    /// <param name="labels">(B, T) token ids; <see cref="IgnoreIndex"/> where no loss is wanted.</param>
    /// <param name="shiftLabels">True: <paramref name="labels"/> are aligned with the inputs (labels = input ids, as
    /// transformers' models take them) and position t is scored on the label of t + 1 (the last position on nothing).
    /// False: labels are already shifted, position t is scored on label t.</param>
    /// <param name="chunkTokens">Labelled positions per chunk; null: as many as fit <see cref="DefaultChunkBytes"/> of float32 logits.</param>
    public static Tensor Compute(Tensor hidden, Tensor headWeight, Tensor? headBias, Tensor labels, bool shiftLabels = true, int? chunkTokens = null)
    {
        using var scope = NewDisposeScope();
        var (sum, tokens) = Sum(hidden, headWeight, headBias, labels, shiftLabels, chunkTokens);
        return (sum / Math.Max(tokens, 1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The summed cross-entropy (a float32 scalar) and the number of labelled positions, for a caller that averages over
    /// several micro-batches by token count (transformers' <c>num_items_in_batch</c>). Arguments as <see cref="Compute"/>.
    /// </summary>
    public static (Tensor Sum, long Tokens) Sum(Tensor hidden, Tensor headWeight, Tensor? headBias, Tensor labels, bool shiftLabels = true, int? chunkTokens = null)
    {
        CheckShapes(hidden, headWeight, headBias, labels);
        if (chunkTokens is <= 0) throw new ArgumentOutOfRangeException(nameof(chunkTokens), chunkTokens, "a chunk must hold at least one token");
        using var scope = NewDisposeScope();
        long batch = labels.shape[0], length = labels.shape[1], hiddenSize = hidden.shape[2], vocab = headWeight.shape[0];
        var targets = labels.to(ScalarType.Int64);
        if (shiftLabels)                                                              // as transformers: pad with -100, drop the first
            targets = cat([targets.narrow(1, 1, length - 1), full(batch, 1, IgnoreIndex, ScalarType.Int64, labels.device)], 1);
        targets = targets.reshape(-1);                                                // (B·T)
        var rows = targets.ne(IgnoreIndex).nonzero().squeeze(1);                      // (N) labelled positions
        long tokens = rows.shape[0];
        var flat = hidden.reshape(-1, hiddenSize);                                    // (B·T, H)
        if (tokens == 0) return (flat.narrow(0, 0, 0).sum().to(ScalarType.Float32).MoveToOuterDisposeScope(), 0);

        var selected = flat.index_select(0, rows);                                    // (N, H)
        var selectedTargets = targets.index_select(0, rows);                          // (N)
        long chunk = chunkTokens ?? Math.Max(1, DefaultChunkBytes / (vocab * sizeof(float)));
        bool recompute = is_grad_enabled() && (hidden.requires_grad || headWeight.requires_grad || headBias?.requires_grad == true);
        Tensor? total = null;
        for (long start = 0; start < tokens; start += chunk)
        {
            long size = Math.Min(chunk, tokens - start);
            Tensor?[] inputs = [selected.narrow(0, start, size), headWeight, headBias, selectedTargets.narrow(0, start, size)];
            var part = recompute
                ? ActivationCheckpoint.Run(t => ChunkSum(t[0]!, t[1]!, t[2], t[3]!), inputs, [])
                : ChunkSum(inputs[0]!, headWeight, headBias, inputs[3]!);
            total = total is null ? part : total + part;
        }
        return (total!.MoveToOuterDisposeScope(), tokens);
    }

    /// <summary>Summed cross-entropy of one chunk: (C, H) hidden states, (C) targets.</summary>
    static Tensor ChunkSum(Tensor hidden, Tensor weight, Tensor? bias, Tensor targets)
    {
        var logits = nn.functional.linear(hidden.to(weight.dtype), weight, bias).to(ScalarType.Float32); // (C, V)
        return nn.functional.cross_entropy(logits, targets, reduction: nn.Reduction.Sum);
    }

    static void CheckShapes(Tensor hidden, Tensor headWeight, Tensor? headBias, Tensor labels)
    {
        static string Shape(Tensor t) => $"[{string.Join(", ", t.shape)}]";
        if (hidden.dim() != 3) throw new ArgumentException($"hidden states have shape {Shape(hidden)}, expected (batch, length, hidden)");
        if (labels.dim() != 2 || labels.shape[0] != hidden.shape[0] || labels.shape[1] != hidden.shape[1])
            throw new ArgumentException($"labels have shape {Shape(labels)}, expected [{hidden.shape[0]}, {hidden.shape[1]}] as the hidden states");
        if (headWeight.dim() != 2 || headWeight.shape[1] != hidden.shape[2])
            throw new ArgumentException($"the head weight has shape {Shape(headWeight)}, expected (vocabulary, {hidden.shape[2]})");
        if (headBias is not null && (headBias.dim() != 1 || headBias.shape[0] != headWeight.shape[0]))
            throw new ArgumentException($"the head bias has shape {Shape(headBias)}, expected [{headWeight.shape[0]}]");
    }
}
