using System.Text.Json;
using SharpTune.Data;
using SharpTune.Generation;
using SharpTune.Inference;
using SharpTune.Models.Decoders;
using SharpTune.Training;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>One model's figures on the held-out pairs and prompts.</summary>
/// <param name="Pairs">log p(chosen) and log p(rejected) of each held-out pair (for DPO's implicit rewards against the base).</param>
/// <param name="Sampled">Share of sampled continuations the genre classifier labels imaginative: all prompts, fiction prompts, informative prompts.</param>
/// <param name="Greedy">The same for greedy continuations.</param>
public sealed record PreferenceFigures(double PreferenceAccuracy, double LogpsMargin, PairScores Pairs,
    (double All, double Fiction, double Informative) Sampled, (double All, double Fiction, double Informative) Greedy);

/// <summary>
/// What the preference suite measures of a model, the base or a tuned one, through the library's own paths:
/// <see cref="LanguageModelComparison.Measure"/> on the held-out pairs (as <c>sharptune eval --compare</c>), and
/// <see cref="TextGenerator"/> continuing held-out prompts (as <c>sharptune generate</c>), each continuation labelled by the
/// suite's genre classifier (<see cref="Predictor"/>, as <c>sharptune predict</c>).
/// </summary>
public static class BrownPreferenceScoring
{
    /// <summary>The held-out prompts continued: the first held-out pairs' (even pairs a fiction prompt, odd an informative one).</summary>
    public static IReadOnlyList<(string Prompt, bool Fiction)> Prompts(string pairsPath, int count) =>
        File.ReadLines(pairsPath).Take(count).Select(line =>
        {
            using var row = JsonDocument.Parse(line);
            return (row.RootElement.GetProperty("prompt").GetString()!,
                row.RootElement.GetProperty("prompt_genre").GetString() == BrownPreferenceData.Imaginative);
        }).ToList();

    /// <param name="samplesPath">Where the continuations and their labels are written (JSONL), for reading them.</param>
    public static PreferenceFigures Measure(LanguageModel lm, string pairsPath, IReadOnlyList<(string Prompt, bool Fiction)> prompts,
        Predictor classifier, BrownPreferencePlan plan, string label, string samplesPath)
    {
        var figures = LanguageModelComparison.Measure(lm, LanguageModelEvalData.Read(pairsPath));
        var pairs = figures.Pairs!;
        if (pairs.Dropped.Count > 0) throw new InvalidOperationException($"{label}: {pairs.Dropped.Count} held-out pairs not scored ({pairs.Dropped[0]})");
        using var samples = new StreamWriter(samplesPath);
        var sampled = Generate(lm, prompts, classifier, plan, greedy: false, label, samples);
        var greedy = Generate(lm, prompts, classifier, plan, greedy: true, label, samples);
        Console.WriteLine($"{label}: preference accuracy {figures.Values["preference_accuracy"]:P1}, log-probability margin {figures.Values["logps_margin"]:F3}; " +
                          $"imaginative continuations: sampled {sampled.All:P1} (fiction prompts {sampled.Fiction:P1}, informative {sampled.Informative:P1}), " +
                          $"greedy {greedy.All:P1} (fiction prompts {greedy.Fiction:P1}, informative {greedy.Informative:P1})");
        return new PreferenceFigures(figures.Values["preference_accuracy"], figures.Values["logps_margin"], pairs, sampled, greedy);
    }

    /// <summary>
    /// Continues every prompt by C tokens in one batch, sampled at <see cref="BrownPreferencePlan.Temperature"/> (top-k and
    /// top-p off) with the plan's seed, or greedily, and returns the share the classifier labels imaginative.
    /// </summary>
    static (double All, double Fiction, double Informative) Generate(LanguageModel lm, IReadOnlyList<(string Prompt, bool Fiction)> prompts,
        Predictor classifier, BrownPreferencePlan plan, bool greedy, string label, StreamWriter samples)
    {
        var tokenizer = lm.Tokenizer;
        var options = new GenerationOptions
        {
            MaxNewTokens = plan.ContinuationTokens, Greedy = greedy, Temperature = BrownPreferencePlan.Temperature, TopK = 0, TopP = 1,
            Seed = BrownPreferencePlan.Seed, StopTokens = tokenizer.EosId is { } eos ? new HashSet<int> { eos } : new HashSet<int>(),
        };
        var generator = new TextGenerator(lm.Model, options, tokenizer) { PadId = tokenizer.PaddingId };
        var outputs = generator.Generate(prompts.Select(p => tokenizer.Encode(p.Prompt, addSpecialTokens: true)).ToList());
        var texts = outputs.Select(o => tokenizer.Decode(o.TokenIds, skipSpecialTokens: true)).ToList();
        // An empty continuation (the model ended at once) is classified as it is: the classifier's own call on "".
        var predictions = classifier.PredictTexts(texts.Select((t, i) => new TextExample(t, null, null, $"{label} continuation {i + 1}")).ToList());
        var imaginative = predictions.Select(p => p.Labels[0] == BrownPreferenceData.Imaginative).ToArray();
        for (int i = 0; i < prompts.Count; i++)
            samples.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["model"] = label, ["decoding"] = greedy ? "greedy" : "sampled", ["prompt_genre"] = prompts[i].Fiction ? BrownPreferenceData.Imaginative : BrownPreferenceData.Informative,
                ["prompt"] = prompts[i].Prompt, ["continuation"] = texts[i], ["label"] = predictions[i].Labels[0],
            }));
        double Share(Func<int, bool> which)
        {
            var picked = Enumerable.Range(0, prompts.Count).Where(which).ToList();
            return picked.Count == 0 ? double.NaN : picked.Average(i => imaginative[i] ? 1.0 : 0.0);
        }
        return (Share(_ => true), Share(i => prompts[i].Fiction), Share(i => !prompts[i].Fiction));
    }
}
