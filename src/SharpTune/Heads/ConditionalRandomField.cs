using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Heads;

/// <summary>
/// A linear-chain conditional random field over per-token tag scores, the usual top layer of a
/// BERT-CRF tagger. A path y_0..y_{L-1} of a sequence of real length L scores
/// <c>start[y_0] + Σ_t emissions[t, y_t] + Σ_{t≥1} transitions[y_{t-1}, y_t] + end[y_{L-1}]</c>;
/// the model is a softmax over all K^L paths. Training minimises the negative log-likelihood of
/// the gold path (forward algorithm), prediction takes the highest-scoring path (Viterbi).
/// Both run over the batch with tensor ops; only the time axis is a C# loop.
/// </summary>
/// <remarks>
/// The field names are the state-dict keys (<c>crf.transitions</c>, <c>crf.start_transitions</c>,
/// <c>crf.end_transitions</c> when the head registers it as <c>crf</c>), as in pytorch-crf, so weights
/// exchange with Python BERT-CRF checkpoints by name.
/// </remarks>
public sealed class ConditionalRandomField : nn.Module
{
#pragma warning disable IDE1006 // snake_case: the field name is the state-dict key.
    /// <summary>(K, K): <c>transitions[i, j]</c> scores moving from tag i to tag j.</summary>
    public readonly Parameter transitions;
    /// <summary>(K): score of a path starting in each tag.</summary>
    public readonly Parameter start_transitions;
    /// <summary>(K): score of a path ending in each tag.</summary>
    public readonly Parameter end_transitions;
#pragma warning restore IDE1006

    /// <summary>Number of tags K.</summary>
    public int NumTags { get; }

    public ConditionalRandomField(int numTags) : base(nameof(ConditionalRandomField))
    {
        if (numTags <= 0) throw new ArgumentOutOfRangeException(nameof(numTags), numTags, $"num_tags must be positive, got {numTags}");
        NumTags = numTags;
        // Small symmetric init (as pytorch-crf): no tag or move is preferred before training.
        transitions = nn.Parameter(empty(numTags, numTags));
        start_transitions = nn.Parameter(empty(numTags));
        end_transitions = nn.Parameter(empty(numTags));
        using (no_grad())
        {
            nn.init.uniform_(transitions, -0.1, 0.1);
            nn.init.uniform_(start_transitions, -0.1, 0.1);
            nn.init.uniform_(end_transitions, -0.1, 0.1);
        }
        RegisterComponents();
    }

    /// <summary>
    /// Negative log-likelihood of the gold tags: <c>log Z(x) - score(x, y)</c> per sequence.
    /// </summary>
    /// <param name="emissions">(B, T, K) floating-point tag scores, usually a classifier's logits.</param>
    /// <param name="tags">(B, T) integer gold tags; values at masked positions are ignored (-100 is fine).</param>
    /// <param name="mask">(B, T) bool or integer; nonzero marks real tokens. Each row is ones then zeros and starts with a one.</param>
    /// <param name="reduction"><c>mean</c> over the batch, <c>sum</c>, or <c>none</c> for a (B) tensor.</param>
    public Tensor NegativeLogLikelihood(Tensor emissions, Tensor tags, Tensor mask, string reduction = "mean")
    {
        if (reduction is not ("mean" or "sum" or "none"))
            throw new ArgumentException($"reduction must be one of mean, sum, none; got '{reduction}'", nameof(reduction));
        using var scope = NewDisposeScope();
        var on = CheckInputs(emissions, mask);                                 // (B, T) bool
        if (!SameShape(tags, emissions.shape[0], emissions.shape[1]))
            throw new ArgumentException($"tags must have shape (B, T) = {Show(emissions.shape[..2])} to match emissions (B, T, K) = {Show(emissions.shape)}, got {Show(tags.shape)}", nameof(tags));
        if (!is_integral(tags.dtype) || tags.dtype == ScalarType.Bool)
            throw new ArgumentException($"tags must be an integer tensor, got {tags.dtype}", nameof(tags));

        // Padding labels (-100 or anything) become tag 0; every use below is multiplied by the mask.
        var gold = tags.to(ScalarType.Int64).masked_fill(on.logical_not(), 0);  // (B, T)
        if (gold.lt(0).logical_or(gold.ge(NumTags)).any().item<bool>())
            throw new ArgumentException($"tags at unmasked positions must lie in [0, {NumTags - 1}], got values from {gold.min().item<long>()} to {gold.max().item<long>()}", nameof(tags));

        var nll = LogPartition(emissions, on) - GoldScore(emissions, gold, on);  // (B)
        var result = reduction switch
        {
            "mean" => nll.mean(),
            "sum" => nll.sum(),
            _ => nll,
        };
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The highest-scoring tag path of each sequence (Viterbi), trimmed to its real length.
    /// </summary>
    /// <param name="emissions">(B, T, K) floating-point tag scores.</param>
    /// <param name="mask">(B, T) bool or integer, ones then zeros, first column all ones.</param>
    /// <returns>B arrays; array b has as many tags as row b of the mask has ones.</returns>
    public long[][] Decode(Tensor emissions, Tensor mask)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var on = CheckInputs(emissions, mask);                                 // (B, T) bool
        var (batch, time) = ((int)emissions.shape[0], (int)emissions.shape[1]);

        // score[b, j]: best score of a path over the first t tokens that ends in tag j.
        var score = start_transitions + emissions[.., 0];                      // (B, K)
        var backpointers = new List<Tensor>(time - 1);
        for (var t = 1; t < time; t++)
        {
            var candidates = score.unsqueeze(2) + transitions + emissions[.., t].unsqueeze(1); // (B, K_prev, K_next)
            var (best, argbest) = candidates.max(1);                           // (B, K) each
            // A finished sequence keeps its score; its backpointers past its end are never read.
            score = where(on[.., t].unsqueeze(1), best, score);
            backpointers.Add(argbest);
        }
        var last = (score + end_transitions).argmax(1).cpu().data<long>().ToArray();     // (B)
        var lengths = on.sum(1, type: ScalarType.Int64).cpu().data<long>().ToArray();   // (B)
        // (B, T-1, K): pointers[b, t-1, j] = best previous tag when token t has tag j.
        var pointers = time > 1 ? stack(backpointers, 1).cpu().data<long>().ToArray() : [];

        var paths = new long[batch][];
        for (var b = 0; b < batch; b++)
        {
            var path = new long[lengths[b]];
            path[^1] = last[b];
            for (var t = path.Length - 1; t > 0; t--)
                path[t - 1] = pointers[((long)b * (time - 1) + (t - 1)) * NumTags + path[t]];
            paths[b] = path;
        }
        return paths;
    }

    /// <summary>log Σ over all paths of exp(score), per sequence: (B).</summary>
    Tensor LogPartition(Tensor emissions, Tensor on)
    {
        // alpha[b, j]: log-sum of the scores of all paths over the first t tokens ending in tag j.
        var alpha = start_transitions + emissions[.., 0];                      // (B, K)
        for (long t = 1; t < emissions.shape[1]; t++)
        {
            var next = (alpha.unsqueeze(2) + transitions + emissions[.., t].unsqueeze(1)) // (B, K_prev, K_next)
                .logsumexp(1);                                                 // (B, K)
            alpha = where(on[.., t].unsqueeze(1), next, alpha);
        }
        return (alpha + end_transitions).logsumexp(1);                         // (B)
    }

    /// <summary>Score of the gold path of each sequence: (B). Needs no loop: every term is a gather.</summary>
    Tensor GoldScore(Tensor emissions, Tensor gold, Tensor on)
    {
        var weight = on.to(emissions.dtype);                                   // (B, T)
        var emitted = emissions.gather(2, gold.unsqueeze(2)).squeeze(2);       // (B, T)
        var score = start_transitions.index_select(0, gold[.., 0])            // (B)
                    + (emitted * weight).sum(1);
        if (emissions.shape[1] > 1)
        {
            // transitions[y_{t-1}, y_t] read from the flattened matrix at y_{t-1} * K + y_t.
            var moves = gold[.., ..^1] * NumTags + gold[.., 1..];              // (B, T-1)
            var moved = transitions.flatten().index_select(0, moves.flatten()).view(moves.shape); // (B, T-1)
            score += (moved * weight[.., 1..]).sum(1);
        }
        var lastIndex = on.sum(1, type: ScalarType.Int64) - 1;                 // (B)
        var lastTag = gold.gather(1, lastIndex.unsqueeze(1)).squeeze(1);       // (B)
        return score + end_transitions.index_select(0, lastTag);
    }

    /// <summary>Validates emissions and mask together and returns the mask as bool (B, T).</summary>
    Tensor CheckInputs(Tensor emissions, Tensor mask)
    {
        if (emissions.dim() != 3 || emissions.shape[2] != NumTags)
            throw new ArgumentException($"emissions must have shape (B, T, K) with K = num_tags = {NumTags}, got {Show(emissions.shape)}", nameof(emissions));
        if (!emissions.is_floating_point())
            throw new ArgumentException($"emissions must be a floating-point tensor, got {emissions.dtype}", nameof(emissions));
        if (emissions.shape[1] == 0)
            throw new ArgumentException($"emissions must have at least one time step, got {Show(emissions.shape)}", nameof(emissions));
        if (!SameShape(mask, emissions.shape[0], emissions.shape[1]))
            throw new ArgumentException($"mask must have shape (B, T) = {Show(emissions.shape[..2])} to match emissions (B, T, K) = {Show(emissions.shape)}, got {Show(mask.shape)}", nameof(mask));

        var on = mask.dtype == ScalarType.Bool ? mask : mask.ne(0);
        if (!on[.., 0].all().item<bool>())
            throw new ArgumentException("mask must be on at the first time step of every sequence (each sequence needs at least one token)", nameof(mask));
        // Left-aligned: no real token may follow padding, or lengths and Viterbi backtracking break.
        if (emissions.shape[1] > 1 && on[.., 1..].logical_and(on[.., ..^1].logical_not()).any().item<bool>())
            throw new ArgumentException("mask must be left-aligned: each row ones then zeros, with no one after a zero", nameof(mask));
        return on;
    }

    static bool SameShape(Tensor tensor, long batch, long time) =>
        tensor.dim() == 2 && tensor.shape[0] == batch && tensor.shape[1] == time;

    static string Show(long[] shape) => "(" + string.Join(", ", shape) + ")";
}
