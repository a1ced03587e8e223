using SharpTune.Models.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Generation;

/// <summary>Mean negative log-likelihood and perplexity over a set of texts, every next-token prediction counted.</summary>
public sealed record PerplexityResult(int Texts, long Tokens, double TotalNll, int Windows, int Stride)
{
    public double MeanNll => Tokens == 0 ? double.NaN : TotalNll / Tokens;
    public double Perplexity => Math.Exp(MeanNll);
}

/// <summary>
/// Scores tokenized texts with a language model. A text longer than the window is scored in overlapping windows
/// (transformers' strided perplexity): each window of at most <c>window</c> tokens starts <c>stride</c> after the
/// previous one and scores only the tokens no earlier window scored, with the tokens before them as context.
/// </summary>
public static class PerplexityScorer
{
    public static PerplexityResult Score(ICausalLanguageModel model, IReadOnlyList<IReadOnlyList<int>> texts, int? window = null, int? stride = null)
    {
        int size = window ?? model.Info.ContextLength;
        int step = stride ?? size / 2;
        if (size < 2 || size > model.Info.ContextLength) throw new ArgumentException($"--window must be between 2 and the model's context ({model.Info.ContextLength}), got {size}");
        if (step < 1 || step >= size) throw new ArgumentException($"--stride must be between 1 and the window less one ({size - 1}), got {step}");

        var module = model.Module;
        bool wasTraining = module.training;
        module.eval();
        using var noGrad = no_grad();
        double total = 0;
        long tokens = 0;
        int windows = 0;
        foreach (var text in texts)
        {
            if (text.Count < 2) continue;                                              // nothing to predict
            int scoredUpTo = 1;                                                        // the first token is never predicted
            for (int start = 0; scoredUpTo < text.Count; start += step)
            {
                int end = Math.Min(start + size, text.Count);
                using var scope = NewDisposeScope();
                var ids = tensor(text.Skip(start).Take(end - start).Select(i => (long)i).ToArray()).unsqueeze(0);   // (1, W)
                var logits = model.Forward(ids);                                       // (1, W, V)
                // Position j predicts token j + 1; score the targets in [scoredUpTo, end).
                int first = scoredUpTo - start;                                        // index of the first new target in the window
                var predicting = logits[0].narrow(0, first - 1, end - scoredUpTo);     // (N, V)
                var targets = ids[0].narrow(0, first, end - scoredUpTo);               // (N)
                var nll = nn.functional.cross_entropy(predicting.to_type(ScalarType.Float64), targets, reduction: nn.Reduction.Sum);
                total += nll.item<double>();
                tokens += end - scoredUpTo;
                scoredUpTo = end;
                windows++;
                if (end == text.Count) break;
            }
        }
        if (wasTraining) module.train();
        return new PerplexityResult(texts.Count, tokens, total, windows, step);
    }
}
