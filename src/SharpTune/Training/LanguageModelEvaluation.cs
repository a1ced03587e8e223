using SharpTune.Data;
using SharpTune.Generation;
using SharpTune.Heads;
using SharpTune.Models.Decoders;

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
}
