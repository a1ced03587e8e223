using System.Text.Json;
using SharpTune.Data;
using SharpTune.Models.Decoders;
using SharpTune.Training;

namespace SharpTune.Inference;

/// <summary>
/// What <c>sharptune eval</c> scores a language model on, told by the file's rows: multiple-choice questions
/// (<c>context</c>, <c>choices</c>, <c>answer</c>), preference pairs (<c>chosen</c>, <c>rejected</c>), or language-model rows
/// (text, prompt/completion, chat, Alpaca; a plain-text file is one text per line).
/// </summary>
public sealed record LanguageModelEvalData(string Path, IReadOnlyList<LanguageModelExample>? Rows = null,
    IReadOnlyList<PreferencePair>? Pairs = null, IReadOnlyList<MultipleChoiceItem>? Questions = null)
{
    public string Kind => Questions is not null ? "multiple choice" : Pairs is not null ? "preference pairs" : "language-model rows";

    public static LanguageModelEvalData Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--data: {path} does not exist", path);
        string extension = System.IO.Path.GetExtension(path).ToLowerInvariant();
        if (extension is ".jsonl" or ".ndjson" && FirstRow(path) is { } first)
        {
            if (first.TryGetProperty("choices", out _)) return new(path, Questions: NonEmpty(MultipleChoiceData.Read(path).Examples, path));
            if (first.TryGetProperty("chosen", out _)) return new(path, Pairs: NonEmpty(PreferenceData.Read(path).Examples, path));
        }
        bool dataFile = extension is ".jsonl" or ".ndjson" or ".json" or ".csv" or ".tsv" or ".tab";
        var rows = dataFile
            ? LanguageModelData.Read(path).Examples
            : TextLines.Read(TextLines.OfFile(path), false, ["text"]).Select((text, i) => new LanguageModelExample(text, null, null, null, $"{path}:{i + 1}")).ToList();
        return new(path, Rows: NonEmpty(rows, path));
    }

    static IReadOnlyList<T> NonEmpty<T>(IReadOnlyList<T> rows, string path) => rows.Count > 0 ? rows : throw new InvalidDataException($"{path}: no rows");

    /// <summary>The first non-blank line parsed, or null when it is not a JSON object (the row reader then says what is wrong).</summary>
    static JsonElement? FirstRow(string path)
    {
        foreach (string line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var document = JsonDocument.Parse(line);
                return document.RootElement.ValueKind == JsonValueKind.Object ? document.RootElement.Clone() : null;
            }
            catch (JsonException)
            {
                return null;
            }
        }
        return null;
    }
}

/// <summary>One model's figures on an evaluation file, and what was counted.</summary>
/// <param name="Counts">What the figures were taken over (rows, tokens, truncated and unscored rows, windows), for the JSON report.</param>
public sealed record LanguageModelFigures(IReadOnlyDictionary<string, double> Values, IReadOnlyList<string> Notes, PairScores? Pairs,
    IReadOnlyDictionary<string, object?> Counts);

/// <summary>
/// A language model's figures on <see cref="LanguageModelEvalData"/>, and two models side by side (a fine-tuned model and
/// its base, <c>eval --compare</c>), so a user sees what fine-tuning changed and what it cost elsewhere: perplexity (on
/// every token of texts, on the completions and assistant turns of structured rows), exact match and ROUGE-L of greedy
/// completions, preference accuracy and margins, multiple-choice accuracy (plain and per character).
/// </summary>
public static class LanguageModelComparison
{
    /// <param name="generate">Prompts of structured rows completed greedily and scored (exact match, ROUGE-L); 0 for none.</param>
    public static LanguageModelFigures Measure(LanguageModel lm, LanguageModelEvalData data, int? window = null, int? stride = null, int generate = 0)
    {
        var values = new Dictionary<string, double>();
        var notes = new List<string>();
        if (data.Questions is { } questions)
        {
            var choices = LanguageModelEvaluation.MultipleChoice(lm, questions);
            values["accuracy"] = choices.Accuracy;
            values["accuracy_per_character"] = choices.NormalizedAccuracy;
            notes.Add($"{choices.Items} questions, each choice scored as the continuation of its context (lm-evaluation-harness's acc and acc_norm)");
            return new LanguageModelFigures(values, notes, null, new Dictionary<string, object?> { ["questions"] = choices.Items });
        }
        if (data.Pairs is { } pairs)
        {
            var scores = LanguageModelEvaluation.Preferences(lm, pairs);
            values["preference_accuracy"] = scores.Accuracy;
            values["logps_margin"] = scores.Margin;
            values["logps_chosen"] = scores.Chosen.Average();
            values["logps_rejected"] = scores.Rejected.Average();
            notes.Add($"{scores.Chosen.Length} pairs: the chosen completion more likely than the rejected one, and the mean log-probability margin");
            notes.AddRange(scores.Dropped.Select(d => $"not scored: {d}"));
            return new LanguageModelFigures(values, notes, scores,
                new Dictionary<string, object?> { ["pairs"] = scores.Chosen.Length, ["not_scored"] = scores.Dropped });
        }
        var rows = data.Rows!;
        var score = LanguageModelEvaluation.Score(lm, rows, window, stride);
        values["perplexity"] = score.Perplexity;
        values["mean_nll"] = score.MeanNll;
        notes.Add($"{score.Examples} rows, {score.Tokens:N0} predicted tokens: {score.Counted}");
        notes.AddRange(score.Dropped.Select(d => $"not scored: {d}"));
        if (generate > 0)
        {
            var encoded = new CausalLmEncoder(lm.Tokenizer, lm.Template, lm.Model.Info.ContextLength, trainOnPrompt: false).Encode(rows).Examples;
            var model = lm.Model as Heads.CausalLmModel ?? new Heads.CausalLmModel(lm.Model);
            var generated = new GeneratedSamples(path: "", lm.Tokenizer, generate).Score(model, encoded);   // scored here, not written
            foreach (var (key, value) in generated) values[key] = value;
            if (generated.Count == 0) notes.Add("--eval-generate: no row has a prompt to complete (text rows have none)");
        }
        var counts = new Dictionary<string, object?>
        {
            ["rows"] = score.Examples, ["tokens"] = score.Tokens, ["counted"] = score.Counted, ["truncated"] = score.Truncated,
            ["not_scored"] = score.Dropped, ["window"] = score.Windows > 0 ? window ?? lm.Model.Info.ContextLength : null,
            ["stride"] = score.Windows > 0 ? score.Stride : null,
        };
        return new LanguageModelFigures(values, notes, null, counts);
    }

    /// <summary>
    /// DPO's implicit rewards with the base as the reference: log p_model - log p_base of each completion; the share of
    /// pairs whose chosen reward beats the rejected one, and the mean margin (β = 1).
    /// </summary>
    public static IReadOnlyDictionary<string, double> ImplicitRewards(PairScores model, PairScores reference)
    {
        if (model.Chosen.Length != reference.Chosen.Length)
            throw new ArgumentException("the two models scored different pairs (one dropped a pair the other kept: a different context length)");
        var chosen = model.Chosen.Zip(reference.Chosen, (m, r) => m - r).ToArray();
        var rejected = model.Rejected.Zip(reference.Rejected, (m, r) => m - r).ToArray();
        return new Dictionary<string, double>
        {
            ["reward_accuracy"] = chosen.Zip(rejected).Average(p => p.First > p.Second ? 1.0 : 0.0),
            ["reward_margin"] = chosen.Zip(rejected).Average(p => p.First - p.Second),
            ["rewards_chosen"] = chosen.Average(),
            ["rewards_rejected"] = rejected.Average(),
        };
    }
}
