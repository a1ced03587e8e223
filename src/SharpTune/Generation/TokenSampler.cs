using static TorchSharp.torch;

namespace SharpTune.Generation;

/// <summary>
/// Picks the next token of each sequence from its logits, as transformers' logits processors and warpers do, in
/// their order: repetition penalty, then temperature, top-k and top-p, then a draw from a seeded generator (or the
/// arg-max when greedy).
/// </summary>
public sealed class TokenSampler(GenerationOptions options) : IDisposable
{
    readonly Generator generator = new Generator((ulong)options.Seed);

    /// <param name="logits">(B, V) float32: each sequence's next-token logits.</param>
    /// <param name="seen">Per sequence, the token ids it holds so far (prompt and generated), for the repetition penalty.</param>
    /// <returns>(B) int64 token ids.</returns>
    public Tensor Next(Tensor logits, IReadOnlyList<IReadOnlyCollection<int>> seen)
    {
        using var scope = NewDisposeScope();
        var scores = logits.to_type(ScalarType.Float32).clone();
        if (options.RepetitionPenalty != 1.0) Penalise(scores, seen, options.RepetitionPenalty);
        if (options.Greedy) return scores.argmax(-1).MoveToOuterDisposeScope();

        scores = scores / options.Temperature;
        long vocab = scores.shape[1];
        if (options.TopK > 0 && options.TopK < vocab)
        {
            var (top, _) = scores.topk(options.TopK, dim: -1);
            var kth = top.narrow(1, options.TopK - 1, 1);                            // (B, 1) the K-th largest
            scores = scores.masked_fill(scores < kth, double.NegativeInfinity);
        }
        if (options.TopP < 1.0)
        {
            var (sorted, order) = scores.sort(-1, descending: false);                // ascending, as transformers' top-p
            var cumulative = sorted.softmax(-1).cumsum(-1);
            var removeSorted = cumulative <= 1 - options.TopP;                       // the low tail whose mass is within 1 - P
            removeSorted.index_fill_(1, tensor(new[] { vocab - 1 }), false);         // always keep the most likely token
            var remove = removeSorted.scatter(1, order, removeSorted);
            scores = scores.masked_fill(remove, double.NegativeInfinity);
        }
        var probabilities = scores.softmax(-1);
        return multinomial(probabilities, 1, generator: generator).squeeze(-1).MoveToOuterDisposeScope();
    }

    /// <summary>transformers' RepetitionPenaltyLogitsProcessor: each seen token's logit divided by the penalty when positive, multiplied when negative.</summary>
    static void Penalise(Tensor scores, IReadOnlyList<IReadOnlyCollection<int>> seen, double penalty)
    {
        for (int b = 0; b < seen.Count; b++)
        {
            if (seen[b].Count == 0) continue;
            using var ids = tensor(seen[b].Distinct().Select(i => (long)i).ToArray());
            using var row = scores[b];
            using var values = row.index_select(0, ids);
            using var penalised = where(values < 0, values * penalty, values / penalty);
            row.index_copy_(0, ids, penalised);
        }
    }

    public void Dispose() => generator.Dispose();
}
