using SharpTune.Data;
using SharpTune.Generation;
using SharpTune.Heads;
using SharpTune.Models.Decoders;
using SharpTune.Training.Tasks;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>What <see cref="LanguageModelEvaluation.Score"/> measured.</summary>
/// <param name="Examples">Rows scored.</param>
/// <param name="Tokens">Predicted tokens counted.</param>
/// <param name="MeanNll">Mean negative log-likelihood per counted token, in nats.</param>
/// <param name="Counted">What counted, in words: every token of each text, or the completions and assistant turns.</param>
/// <param name="Truncated">Rows cut to the model's context (structured rows only; long texts are scored in windows).</param>
/// <param name="Dropped">Rows left with nothing to score after truncation, with their source (file:line).</param>
/// <param name="Windows">Windows of a long text scored (texts only; 0 for structured rows).</param>
/// <param name="Stride">The stride between those windows (texts only).</param>
public sealed record LanguageModelScore(int Examples, long Tokens, double MeanNll, string Counted, int Truncated, IReadOnlyList<string> Dropped,
    int Windows, int Stride)
{
    public double Perplexity => Math.Exp(MeanNll);
}

/// <summary>Each pair's summed log-probabilities of its chosen and rejected completions, and their token counts.</summary>
public sealed record PairScores(double[] Chosen, double[] Rejected, int[] ChosenTokens, int[] RejectedTokens, IReadOnlyList<string> Dropped)
{
    /// <summary>Pairs whose chosen completion is more likely than the rejected one.</summary>
    public double Accuracy => Chosen.Zip(Rejected).Average(p => p.First > p.Second ? 1.0 : 0.0);

    /// <summary>The mean of log p(chosen) - log p(rejected).</summary>
    public double Margin => Chosen.Zip(Rejected).Average(p => p.First - p.Second);
}

/// <summary>Multiple-choice accuracy as lm-evaluation-harness computes it: the most likely choice, and the most likely per character.</summary>
/// <param name="LogLikelihoods">Per question, each choice's summed log-probability as the continuation of the context.</param>
public sealed record ChoiceScores(int Items, double Accuracy, double NormalizedAccuracy, int[] Picked, double[][] LogLikelihoods);

/// <summary>
/// A language model's perplexity on a data file, counted as training counts it: raw <c>text</c> rows on every token
/// (long texts in overlapping windows, as llama.cpp's perplexity tool scores them), and prompt/completion, chat and
/// Alpaca rows on the completion or the assistant turns only, rendered with the model's chat template: the held-out
/// version of the validation perplexity a run reports.
/// </summary>
public static class LanguageModelEvaluation
{
    /// <param name="lm">The model with its tokenizer and chat template (a base, or a run folder's model).</param>
    /// <param name="rows">The rows, as <see cref="LanguageModelData.Read"/> gives them.</param>
    /// <param name="window">Texts: tokens scored at once (default: the model's context). Structured rows: the length
    /// they are cut to (default: the context).</param>
    /// <param name="stride">Texts: the step between windows (default: half the window).</param>
    public static LanguageModelScore Score(LanguageModel lm, IReadOnlyList<LanguageModelExample> rows, int? window = null, int? stride = null, int batchSize = 8)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        if (rows.Count == 0) throw new ArgumentException("no rows to evaluate");
        int context = lm.Model.Info.ContextLength;
        if (rows.All(r => r.Text is not null))
        {
            var tokens = rows.Select(r => (IReadOnlyList<int>)lm.Tokenizer.Encode(r.Text!)).ToList();
            var texts = PerplexityScorer.Score(lm.Model, tokens, window, stride);
            return new LanguageModelScore(texts.Texts, texts.Tokens, texts.Tokens == 0 ? double.NaN : texts.TotalNll / texts.Tokens,
                "every token of each text", 0, [], texts.Windows, texts.Stride);
        }

        // As the validation set of a run: the same encoder, the loss on what a run trains on.
        if (window is { } w && (w < 2 || w > context))
            throw new ArgumentOutOfRangeException(nameof(window), window, $"--window {w}: rows are cut to at most the model's context ({context} tokens) and at least 2");
        var encoder = new CausalLmEncoder(lm.Tokenizer, lm.Template, window ?? context, trainOnPrompt: false);
        var encoded = encoder.Encode(rows);
        if (encoded.Examples.Count == 0) throw new ArgumentException($"no row has anything to score within {window ?? context} tokens");
        // A base model is wrapped, not owned: the LanguageModel disposes its decoder.
        var model = lm.Model as CausalLmModel ?? new CausalLmModel(lm.Model);
        long padId = lm.Tokenizer.PaddingId;
        var (loss, counted) = CausalLmObjective.NegativeLogLikelihood(model, encoded.Examples, batchSize, padId);
        string forms = string.Join(", ", rows.GroupBy(r => r.Form).Select(g => $"{g.Count()} {g.Key}"));
        return new LanguageModelScore(encoded.Examples.Count, counted, loss, $"the text rows' tokens, the completions and the assistant turns ({forms})",
            encoded.Truncated, encoded.Dropped, 0, 0);
    }

    /// <summary>
    /// The log-probabilities of each pair's completions, rendered and masked as preference training renders them (chat
    /// template, the completion only); pairs either side of which leaves nothing to score within the context are listed.
    /// </summary>
    public static PairScores Preferences(LanguageModel lm, IReadOnlyList<PreferencePair> pairs, int batchSize = 8)
    {
        var encoder = new CausalLmEncoder(lm.Tokenizer, lm.Template, lm.Model.Info.ContextLength, trainOnPrompt: false);
        var kept = new List<(CausalLmExample Chosen, CausalLmExample Rejected)>();
        var dropped = new List<string>();
        foreach (var pair in pairs)
        {
            var encoded = encoder.Encode([pair.Chosen, pair.Rejected]);
            if (encoded.Examples.Count == 2) kept.Add((encoded.Examples[0], encoded.Examples[1]));
            else dropped.Add($"{pair.Source}: a completion has no token within the model's context");
        }
        if (kept.Count == 0) throw new ArgumentException("no pair has both completions within the model's context");
        var sums = Sums(lm, kept.Select(p => p.Chosen).Concat(kept.Select(p => p.Rejected)).ToList(), batchSize);
        int n = kept.Count;
        return new PairScores(sums[..n], sums[n..], kept.Select(p => p.Chosen.Targets).ToArray(), kept.Select(p => p.Rejected.Targets).ToArray(), dropped);
    }

    /// <summary>
    /// lm-evaluation-harness's multiple choice: each choice's log-likelihood as the continuation of the context (after a
    /// space), the most likely choice (acc) and the most likely per character of the choice (acc_norm).
    /// </summary>
    public static ChoiceScores MultipleChoice(LanguageModel lm, IReadOnlyList<MultipleChoiceItem> items, int batchSize = 8)
    {
        if (items.Count == 0) throw new ArgumentException("no question to score");
        var encoder = new CausalLmEncoder(lm.Tokenizer, null, lm.Model.Info.ContextLength, trainOnPrompt: false) { EndWithEos = false };
        var sequences = new List<CausalLmExample>();
        foreach (var item in items)
        {
            var encoded = encoder.Encode(item.Choices.Select(c => new LanguageModelExample(null, item.Context, " " + c, null, item.Source)).ToList());
            if (encoded.Examples.Count != item.Choices.Count) throw new ArgumentException($"{item.Source}: a choice has no token within the model's context");
            sequences.AddRange(encoded.Examples);
        }
        var sums = Sums(lm, sequences, batchSize);
        int at = 0, right = 0, rightNormalized = 0;
        var picked = new int[items.Count];
        var likelihoods = new double[items.Count][];
        for (int q = 0; q < items.Count; q++)
        {
            var choices = items[q].Choices;
            var scores = likelihoods[q] = sums.AsSpan(at, choices.Count).ToArray();
            at += choices.Count;
            int best = Array.IndexOf(scores, scores.Max());
            var normalized = scores.Select((v, c) => v / Math.Max(1, (" " + choices[c]).Length)).ToArray();
            int bestNormalized = Array.IndexOf(normalized, normalized.Max());
            picked[q] = best;
            right += best == items[q].Answer ? 1 : 0;
            rightNormalized += bestNormalized == items[q].Answer ? 1 : 0;
        }
        return new ChoiceScores(items.Count, (double)right / items.Count, (double)rightNormalized / items.Count, picked, likelihoods);
    }

    /// <summary>Each sequence's summed log-probability of its labelled tokens, in eval mode, batched by length.</summary>
    static double[] Sums(LanguageModel lm, IReadOnlyList<CausalLmExample> sequences, int batchSize)
    {
        var model = lm.Model as CausalLmModel ?? new CausalLmModel(lm.Model);
        var result = new double[sequences.Count];
        var order = Enumerable.Range(0, sequences.Count).OrderBy(i => sequences[i].Length).ToArray();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            for (int start = 0; start < order.Length; start += batchSize)
            {
                using var scope = NewDisposeScope();
                var batch = order.Skip(start).Take(batchSize).ToList();
                var (ids, mask, labels, _) = CausalLmCollator.Collate(batch.Select(i => sequences[i]).ToList(), lm.Tokenizer.PaddingId);
                var sums = PreferenceObjective.SequenceLogProbs(model, ids, mask, labels).Sums.data<double>().ToArray();
                for (int k = 0; k < batch.Count; k++) result[batch[k]] = sums[k];
            }
        }
        finally
        {
            model.train(wasTraining);
        }
        return result;
    }
}
