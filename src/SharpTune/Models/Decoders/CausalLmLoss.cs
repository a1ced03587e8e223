using SharpTune.Models.Quantized;
using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders;

/// <summary>
/// The causal language-modelling loss computed from the final hidden states without materialising the (B, T, V)
/// logits: the head and the cross-entropy run over chunks of tokens. When gradients are wanted, each chunk's gradients
/// (for the hidden states, and the head's weight and bias where they train) are computed in the forward pass, right
/// after its loss, from <c>softmax(logits) - onehot(target)</c>, and only they are kept for the backward pass, as
/// Liger-Kernel's fused linear cross-entropy does: no chunk's logits are computed twice. At Qwen2.5's 151,936 tokens,
/// fp32 logits for 4 x 512 tokens take 1.2 GiB and their gradient as much again; here one chunk's.
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
    /// The size of one chunk's float32 logits by default: 32 MiB (55 tokens at a 151,936-token vocabulary). A chunk's
    /// logits are read and written several times (log-sum-exp, softmax - onehot in place, the cast for the products),
    /// and the head's products over a chunk of this size ran 1.5 to 1.7 times faster than over 64 MiB on the project's
    /// AMD EPYC (forward and backward over 4 x 512 tokens at Qwen2.5's head: 8.1 to 8.7 s against 13.8 to 14.4 s in
    /// fp32, 4.8 to 7.0 s against 8.5 to 10.9 s in bf16; 16 MiB was no faster). The forward pass holds about two
    /// chunks' worth (the logits and their bf16 cast).
    /// </summary>
    public const long DefaultChunkBytes = 32L << 20;

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
        CheckShapes(hidden, headWeight.shape, headBias, labels);
        return Sum(hidden, new Head(headWeight, null, headBias), labels, shiftLabels, chunkTokens);
    }

    /// <summary>
    /// <see cref="Compute(Tensor, Tensor, Tensor?, Tensor, bool, int?)"/> over a head kept in its file's blocks (frozen:
    /// gradients reach the hidden states, and the bias where it trains).
    /// </summary>
    /// <param name="roundActivations">Round the hidden states as ggml does for the head's type (scoring; see <see cref="QuantizedOps.Linear"/>).</param>
    public static Tensor Compute(Tensor hidden, QuantizedMatrix head, Tensor? headBias, Tensor labels, bool roundActivations,
        bool shiftLabels = true, int? chunkTokens = null)
    {
        using var scope = NewDisposeScope();
        var (sum, tokens) = Sum(hidden, head, headBias, labels, roundActivations, shiftLabels, chunkTokens);
        return (sum / Math.Max(tokens, 1)).MoveToOuterDisposeScope();
    }

    /// <summary><see cref="Sum(Tensor, Tensor, Tensor?, Tensor, bool, int?)"/> over a head kept in its file's blocks.</summary>
    public static (Tensor Sum, long Tokens) Sum(Tensor hidden, QuantizedMatrix head, Tensor? headBias, Tensor labels, bool roundActivations,
        bool shiftLabels = true, int? chunkTokens = null)
    {
        CheckShapes(hidden, [head.Rows, head.Columns], headBias, labels);
        return Sum(hidden, new Head(null, head, headBias) { RoundActivations = roundActivations }, labels, shiftLabels, chunkTokens);
    }

    static (Tensor Sum, long Tokens) Sum(Tensor hidden, Head head, Tensor labels, bool shiftLabels, int? chunkTokens)
    {
        if (chunkTokens is <= 0) throw new ArgumentOutOfRangeException(nameof(chunkTokens), chunkTokens, "a chunk must hold at least one token");
        using var scope = NewDisposeScope();
        long batch = labels.shape[0], length = labels.shape[1], hiddenSize = hidden.shape[2], vocab = head.Vocabulary;
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
        bool gradients = is_grad_enabled() && (hidden.requires_grad || head.Weight?.requires_grad == true || head.Bias?.requires_grad == true);
        if (head.Stored is not null && !gradients)
        {
            using var noGrad = no_grad();
            var (sum, _, _) = StoredHeadLoss(head, selected, selectedTargets, wantHidden: false, wantBias: false);
            return (sum.MoveToOuterDisposeScope(), tokens);
        }
        if (gradients)
            return (FusedHeadLoss.apply(chunk, selected, head.Weight ?? (object)head, head.Bias!, selectedTargets).MoveToOuterDisposeScope(), tokens);
        var total = zeros([], ScalarType.Float32, hidden.device);
        for (long start = 0; start < tokens; start += chunk)
        {
            using var chunkScope = NewDisposeScope();                                  // one chunk's logits at a time
            long size = Math.Min(chunk, tokens - start);
            total.add_(ChunkSum(head.Logits(selected.narrow(0, start, size)), selectedTargets.narrow(0, start, size)));
        }
        return (total.MoveToOuterDisposeScope(), tokens);
    }

    /// <summary>The output projection: a dense weight (V, H), or one kept in its file's blocks (computed in float32).</summary>
    sealed record Head(Tensor? Weight, QuantizedMatrix? Stored, Tensor? Bias)
    {
        /// <summary>Whether stored products round the hidden states as ggml does: for scoring, not for training (see <see cref="QuantizedOps.Linear"/>).</summary>
        public bool RoundActivations { get; init; }

        public long Vocabulary => Weight?.shape[0] ?? Stored!.Rows;

        /// <summary>The dtype the head's products compute in.</summary>
        public ScalarType Dtype => Weight?.dtype ?? ScalarType.Float32;

        /// <summary>A chunk's logits as the model computes them: in the head's dtype, then float32. (C, H) -> (C, V).</summary>
        public Tensor Logits(Tensor hidden) => Weight is not null
            ? nn.functional.linear(hidden.to(Weight.dtype), Weight, Bias).to(ScalarType.Float32)
            : Biased(QuantizedOps.Product(hidden.to(ScalarType.Float32), Stored!, RoundActivations));

        Tensor Biased(Tensor logits) => Bias is null ? logits : logits.add_(Bias);

        /// <summary>d(hidden) = d(logits) W: (C, V) -> (C, H).</summary>
        public Tensor InputGradient(Tensor gradLogits) => Weight is not null ? gradLogits.matmul(Weight) : QuantizedOps.InputGradient(gradLogits, Stored!);
    }

    /// <summary>
    /// The summed loss over a head kept in its file's blocks, and the gradients of that sum for the (N, H) hidden states
    /// and the bias where asked, with the head dequantized tile by tile over the vocabulary rather than per chunk of
    /// tokens (a 151,936 x 896 head is 136 M values to decode; once per 55-token chunk, twice with the gradient, that was a
    /// third of a LoRA step at 4 x 512 tokens). The first pass keeps a running log-sum-exp per token across the tiles
    /// (the largest logit so far and the sum of exponentials below it, rescaled when the largest grows) and each token's
    /// target logit; the second, only for gradients, computes each tile's logits again and its softmax - onehot from the
    /// finished log-sum-exp. A tile's logits are (N, tile) float32, at most <see cref="DefaultChunkBytes"/>.
    /// </summary>
    static (Tensor Sum, Tensor? GradHidden, Tensor? GradBias) StoredHeadLoss(Head head, Tensor hidden, Tensor targets, bool wantHidden, bool wantBias)
    {
        using var scope = NewDisposeScope();
        var w = head.Stored!;
        long n = hidden.shape[0];
        var gemm = QuantizedOps.GemmDtype(w, ScalarType.Float32);
        var rows = head.RoundActivations ? ActivationRounding.Apply(hidden, w.Type, gemm) : hidden.to(gemm);          // (N, H)
        int maxRows = (int)Math.Min(int.MaxValue, Math.Max(16, DefaultChunkBytes / (sizeof(float) * n)));
        Tensor Logits(long first, Tensor tile)                                                                        // (N, tile) float32
        {
            var logits = rows.matmul(tile.t()).to(ScalarType.Float32);
            if (head.Bias is { } bias) logits.add_(bias.narrow(0, first, tile.shape[0]));
            return logits;
        }
        (Tensor Local, Tensor Inside) Targets(long first, long count) =>
            ((targets - first).clamp(0, count - 1).unsqueeze(1), targets.ge(first).logical_and(targets.lt(first + count)));

        var largest = full(n, float.NegativeInfinity, ScalarType.Float32);
        var exponentials = zeros(n, ScalarType.Float32);
        var picked = zeros(n, ScalarType.Float32);
        QuantizedOps.ForEachTile(w, gemm, (first, tile) =>
        {
            using var scope = NewDisposeScope();
            var logits = Logits(first, tile);
            var grown = maximum(largest, logits.amax([1L]));
            exponentials.mul_((largest - grown).exp_()).add_((logits - grown.unsqueeze(1)).exp_().sum(1));
            largest.copy_(grown);
            var (local, inside) = Targets(first, tile.shape[0]);
            picked.add_(where(inside, logits.gather(1, local).squeeze(1), 0f));
        }, maxRows);
        var logNormaliser = largest + exponentials.log();                                                             // (N)
        var sum = (logNormaliser - picked).sum();
        if (!wantHidden && !wantBias) return (sum.MoveToOuterDisposeScope(), null, null);

        var gradHidden = wantHidden ? zeros(n, w.Columns, ScalarType.Float32) : null;
        var gradBias = wantBias ? zeros(w.Rows, ScalarType.Float32) : null;
        QuantizedOps.ForEachTile(w, gemm, (first, tile) =>
        {
            using var scope = NewDisposeScope();
            var delta = Logits(first, tile).sub_(logNormaliser.unsqueeze(1)).exp_();                               // softmax
            var (local, inside) = Targets(first, tile.shape[0]);
            delta.scatter_add_(1, local, inside.to(ScalarType.Float32).neg().unsqueeze(1));                            // - onehot
            if (gradHidden is not null)
            {
                if (gemm == ScalarType.Float32) gradHidden.addmm_(delta, tile);
                else gradHidden.add_(delta.to(gemm).matmul(tile));
            }
            gradBias?.narrow(0, first, tile.shape[0]).add_(delta.sum(0L));
        }, maxRows);
        return (sum.MoveToOuterDisposeScope(), gradHidden?.to(hidden.dtype).MoveToOuterDisposeScope(), gradBias?.MoveToOuterDisposeScope());
    }

    /// <summary>Summed cross-entropy of one chunk's (C, V) float32 logits and (C) targets.</summary>
    static Tensor ChunkSum(Tensor logits, Tensor targets) => nn.functional.cross_entropy(logits, targets, reduction: nn.Reduction.Sum);

    /// <summary>
    /// The autograd node of the summed loss over (N, H) labelled hidden states. Arguments: the chunk size, the hidden
    /// states, the head weight, the head bias (or null), the (N) targets. The forward pass computes, chunk by chunk, the
    /// loss and the gradients of the loss sum; the backward pass scales them by the incoming gradient. The gradients are
    /// those autograd gives through <see cref="Logits"/> and the cross-entropy: d(logits) = softmax - onehot in float32,
    /// cast to the head's dtype for the products, as the backward of the cast to float32 does.
    /// </summary>
    sealed class FusedHeadLoss : autograd.SingleTensorFunction<FusedHeadLoss>
    {
        public override string Name => nameof(FusedHeadLoss);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            long chunk = (long)vars[0];
            var (hidden, bias, targets) = ((Tensor)vars[1], vars[3] as Tensor, (Tensor)vars[4]);
            var head = vars[2] as Head ?? new Head((Tensor)vars[2], null, bias);
            var weight = head.Weight;
            bool wantHidden = hidden.requires_grad, wantWeight = weight?.requires_grad == true, wantBias = bias?.requires_grad == true;
            using var noGrad = no_grad();
            if (head.Stored is not null)
            {
                var (sum, storedHidden, storedBias) = StoredHeadLoss(head, hidden, targets, wantHidden, wantBias);
                ctx.save_data(nameof(Gradients), new Gradients(storedHidden?.DetachFromDisposeScope(), null,
                    storedBias?.DetachFromDisposeScope(), head.Dtype, bias?.dtype ?? head.Dtype));
                return sum;
            }
            long tokens = hidden.shape[0];
            var gradHidden = wantHidden ? empty(hidden.shape, hidden.dtype, hidden.device) : null;
            var gradWeight = wantWeight ? zeros(weight!.shape, ScalarType.Float32, weight.device) : null;
            var gradBias = wantBias ? zeros(bias!.shape, ScalarType.Float32, bias.device) : null;
            var total = zeros([], ScalarType.Float32, hidden.device);
            for (long start = 0; start < tokens; start += chunk)
            {
                using var scope = NewDisposeScope();
                long size = Math.Min(chunk, tokens - start);
                var h = hidden.narrow(0, start, size).to(head.Dtype);                   // (C, H)
                var target = targets.narrow(0, start, size).unsqueeze(1);              // (C, 1)
                var logits = head.Logits(h);                                            // (C, V) float32
                var logNormaliser = logits.logsumexp(1, keepdim: true);                 // (C, 1)
                total.add_(logNormaliser.sum() - logits.gather(1, target).sum());
                // d(sum of -log softmax[target]) / d(logits) = softmax - onehot, in place over the logits.
                var delta = logits.sub_(logNormaliser).exp_().scatter_add_(1, target, full(target.shape, -1f, ScalarType.Float32, logits.device));
                var d = delta.to(head.Dtype);
                gradHidden?.narrow(0, start, size).copy_(head.InputGradient(d));
                // (V, H) per chunk: accumulated by the product itself where the dtypes allow, not through a temporary
                // the size of the head (545 MB at Qwen2.5's) written and added once per chunk.
                if (gradWeight is not null)
                {
                    if (d.dtype == gradWeight.dtype) gradWeight.addmm_(d.t(), h);
                    else gradWeight.add_(d.t().matmul(h));
                }
                gradBias?.add_(delta.sum(0L, keepdim: false));
            }
            // Kept by the node, outside every dispose scope, until the backward pass uses and frees them.
            ctx.save_data(nameof(Gradients), new Gradients(gradHidden?.DetachFromDisposeScope(), gradWeight?.DetachFromDisposeScope(),
                gradBias?.DetachFromDisposeScope(), head.Dtype, bias?.dtype ?? head.Dtype));
            return total;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var saved = (Gradients)ctx.get_data(nameof(Gradients));
            if (saved.Used) throw new InvalidOperationException("the chunked loss's backward pass ran twice; its gradients were computed once, in the forward pass");
            saved.Used = true;
            Tensor Scaled(Tensor? grad, ScalarType dtype)
            {
                if (grad is null) return null!;
                using (grad)
                using (var scale = gradOutput.to(grad.dtype))
                    return grad.mul(scale).to(dtype);
            }
            return [null!, Scaled(saved.Hidden, saved.Hidden?.dtype ?? ScalarType.Float32), Scaled(saved.Weight, saved.WeightDtype),
                    Scaled(saved.Bias, saved.BiasDtype), null!];
        }

        /// <summary>The gradients of the loss sum the forward pass computed (null where nothing trains), and the dtypes to return them in.</summary>
        sealed record Gradients(Tensor? Hidden, Tensor? Weight, Tensor? Bias, ScalarType WeightDtype, ScalarType BiasDtype)
        {
            public bool Used { get; set; }
        }
    }

    static void CheckShapes(Tensor hidden, long[] headShape, Tensor? headBias, Tensor labels)
    {
        static string Shape(Tensor t) => $"[{string.Join(", ", t.shape)}]";
        if (hidden.dim() != 3) throw new ArgumentException($"hidden states have shape {Shape(hidden)}, expected (batch, length, hidden)");
        if (labels.dim() != 2 || labels.shape[0] != hidden.shape[0] || labels.shape[1] != hidden.shape[1])
            throw new ArgumentException($"labels have shape {Shape(labels)}, expected [{hidden.shape[0]}, {hidden.shape[1]}] as the hidden states");
        if (headShape.Length != 2 || headShape[1] != hidden.shape[2])
            throw new ArgumentException($"the head weight has shape [{string.Join(", ", headShape)}], expected (vocabulary, {hidden.shape[2]})");
        if (headBias is not null && (headBias.dim() != 1 || headBias.shape[0] != headShape[0]))
            throw new ArgumentException($"the head bias has shape {Shape(headBias)}, expected [{headShape[0]}]");
    }
}
