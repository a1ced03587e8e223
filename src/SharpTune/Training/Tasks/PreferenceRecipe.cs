using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Data;
using SharpTune.ModelFolders;

namespace SharpTune.Training.Tasks;

/// <summary>
/// Preference tuning (<c>--task preference</c>, DPO or ORPO) of a decoder with any method: pairs in TRL's forms read and
/// tokenized by the model's rules (chat template, the loss on the completions only), the reference of DPO either the base
/// under the adapter or log-probabilities computed once before training and kept in the run folder; saved as the
/// causal-LM task saves (an adapter in PEFT's format, or the whole model), so generate, chat, eval and export take it.
/// </summary>
public sealed class PreferenceRecipe(FineTuneOptions options) : RunRecipe<PreferenceExample>(options)
{
    /// <summary>The reference log-probabilities of a run that computes them before training.</summary>
    public const string ReferenceFile = "reference_logps.json";

    LanguageModelRun? built;

    public override RunPlan<PreferenceExample> Prepare(RunContext run)
    {
        var say = run.Say;
        var preference = Options.Preference.Validate();
        built = LanguageModelRun.Build(run, Options, sequencesPerExample: 2);
        var (lm, model, maxLength) = (built.Lm, built.Model, built.MaxLength);
        // A frozen base under an adapter or prompt module is the reference; a method that trains the base needs it computed first.
        bool referenceIsBase = built.Method is { TrainsBaseWeights: false };
        bool precompute = preference.NeedsReference && (preference.PrecomputeReference || !referenceIsBase);
        if (preference.NeedsReference)
            say(precompute
                ? $"reference: log-probabilities of the {(referenceIsBase ? "base under the adapter" : "model before training")} computed once, kept in {ReferenceFile}" +
                  (referenceIsBase ? "" : $" (--method {Options.Method} trains the base itself)")
                : "reference: the base with the adapter switched off, at each step (no second copy of the weights; --precompute-reference computes it once)");

        var (trainRows, validationRows, skipped) = run.ReadSplit(path => PreferenceData.Read(path, Options.SkipBadRows, Options.Format), "pairs", minimumToSplit: 2);
        if (lm.Template is null && trainRows.Concat(validationRows).Any(p => p.Chosen.Messages is not null))
            say("note: the model ships no chat template; conversations are written as 'User: ...' / 'Assistant: ...' lines (give one with --chat-template)");
        var encoder = new CausalLmEncoder(lm.Tokenizer, lm.Template, maxLength, trainOnPrompt: false);
        var (train, trainTruncated) = Encode(encoder, trainRows, skipped);
        var (validation, validationTruncated) = Encode(encoder, validationRows, skipped);
        if (train.Count == 0)
        {
            run.ListSkipped(skipped);
            throw new ArgumentException($"{Options.Train}: no pair has completion tokens on both sides within --max-length {maxLength}");
        }
        say($"data: {train.Count} training and {validation.Count} validation pairs " +
            $"({trainRows.GroupBy(r => r.Form).Select(g => $"{g.Count()} {g.Key}").Aggregate((a, b) => $"{a}, {b}")})" +
            (skipped.Count > 0 ? $", {skipped.Count} rows skipped (listed in {run.SkippedRowsFile})" : ""));
        int truncated = trainTruncated + validationTruncated;
        if (truncated > 0) say($"truncated {truncated} pair(s) to --max-length {maxLength} ({trainTruncated} training, {validationTruncated} validation)");

        long padId = lm.Tokenizer.PaddingId;
        if (precompute) (train, validation) = WithReference(run, train, validation, padId);
        var objective = new PreferenceObjective(model, padId, preference, referenceIsBase);
        return new RunPlan<PreferenceExample>(objective, built.Parameters, train, validation, train.Count, truncated, skipped,
            Options with { MaxLength = maxLength, Sources = new Dictionary<string, string>(Options.Sources) });
    }

    public override void SaveModel(string folder) => built!.Save(folder, Options.Method);

    public override string? AdapterFolder => built?.Method is null ? null : LanguageModelFolder.AdapterFolder;

    public override string? CurveMetric => "reward_accuracy";

    public override void ReportFinal(RunContext run, IReadOnlyDictionary<string, double> metrics, TrainerState state) =>
        run.Say(string.Create(CultureInfo.InvariantCulture,
            $"validation: loss {metrics["loss"]:F4}, reward accuracy {metrics["reward_accuracy"]:P1}, margin {metrics["reward_margin"]:F4} " +
            $"(chosen {metrics["rewards_chosen"]:F4}, rejected {metrics["rewards_rejected"]:F4})"));

    public override void Dispose()
    {
        built?.Dispose();
        base.Dispose();
    }

    /// <summary>Both sides of each pair tokenized; a pair either side of which has no completion token within the length is dropped and listed.</summary>
    static (List<PreferenceExample> Pairs, int Truncated) Encode(CausalLmEncoder encoder, IReadOnlyList<PreferencePair> rows, List<string> skipped)
    {
        var pairs = new List<PreferenceExample>(rows.Count);
        int truncated = 0;
        foreach (var row in rows)
        {
            var encoded = encoder.Encode([row.Chosen, row.Rejected]);
            if (encoded.Truncated > 0) truncated++;
            if (encoded.Examples.Count < 2)
            {
                skipped.Add($"{row.Source}: the chosen or the rejected completion has no token within --max-length");
                continue;
            }
            pairs.Add(new PreferenceExample(encoded.Examples[0], encoded.Examples[1], row.Source));
        }
        return (pairs, truncated);
    }

    /// <summary>
    /// The reference log-probabilities of every pair, computed with the model as built (before any checkpoint is restored:
    /// the base, or the base under a fresh adapter switched off), or read back from the run folder when it holds those
    /// of the same pairs (a resumed run), so a resumed run sees the numbers its first part saw.
    /// </summary>
    (List<PreferenceExample> Train, List<PreferenceExample> Validation) WithReference(
        RunContext run, List<PreferenceExample> train, List<PreferenceExample> validation, long padId)
    {
        string path = Path.Combine(run.Folder, ReferenceFile);
        string fingerprint = DataParallelJob.TextHash(string.Join("\n", train.Concat(validation).Select(p =>
            $"{p.Source} {string.Join(',', p.Chosen.InputIds)} {string.Join(',', p.Rejected.InputIds)}")));
        if (Options.Resume && Read(path, fingerprint, train.Count, validation.Count) is { } stored)
        {
            run.Say($"reference: read from {path}");
            return (Attach(train, stored.Train), Attach(validation, stored.Validation));
        }
        var model = built!.Model;
        int batchSize = Trainer<PreferenceExample>.EvaluationBatchSize(Options.Training);
        (double, double)[] Compute(List<PreferenceExample> pairs)
        {
            var result = new (double, double)[pairs.Count];
            var order = Enumerable.Range(0, pairs.Count).OrderBy(i => pairs[i].Chosen.Length + pairs[i].Rejected.Length).ToArray();
            for (int start = 0; start < order.Length; start += batchSize)
            {
                using var scope = TorchSharp.torch.NewDisposeScope();
                var batch = order.Skip(start).Take(batchSize).ToList();
                var sequences = batch.Select(i => pairs[i].Chosen).Concat(batch.Select(i => pairs[i].Rejected)).ToList();
                var (ids, mask, labels, _) = CausalLmCollator.Collate(sequences, padId);
                var sums = PreferenceObjective.ReferenceLogProbs(model, ids, mask, labels).data<double>().ToArray();
                for (int k = 0; k < batch.Count; k++) result[batch[k]] = (sums[k], sums[batch.Count + k]);
            }
            return result;
        }
        var trainReference = Compute(train);
        var validationReference = Compute(validation);
        if (run.World.IsMain)
        {
            Directory.CreateDirectory(run.Folder);
            var json = new JsonObject
            {
                ["fingerprint"] = fingerprint,
                ["train"] = new JsonArray([.. trainReference.Select(r => (JsonNode)new JsonArray(r.Item1, r.Item2))]),
                ["validation"] = new JsonArray([.. validationReference.Select(r => (JsonNode)new JsonArray(r.Item1, r.Item2))]),
            };
            AtomicFile.WriteAllText(path, json.ToJsonString() + "\n");
        }
        return (Attach(train, trainReference), Attach(validation, validationReference));
    }

    static List<PreferenceExample> Attach(List<PreferenceExample> pairs, (double, double)[] reference) =>
        pairs.Select((p, i) => p with { Reference = reference[i] }).ToList();

    /// <summary>The stored reference, or null when the file is missing or was written for other pairs.</summary>
    static ((double, double)[] Train, (double, double)[] Validation)? Read(string path, string fingerprint, int train, int validation)
    {
        if (!File.Exists(path)) return null;
        InvalidDataException Bad(string why) =>
            new($"{path}: not a reference file SharpTune wrote ({why}); delete it to compute the reference again");
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw Bad("not a JSON object");
        }
        catch (JsonException e)
        {
            throw Bad(e.Message);
        }
        if (root["fingerprint"] is not JsonValue print || !print.TryGetValue(out string? stored) || stored != fingerprint) return null;
        (double, double)[] Values(string key)
        {
            if (root[key] is not JsonArray rows) throw Bad($"'{key}' is not a list");
            return [.. rows.Select((row, i) => row is JsonArray { Count: 2 } two && two[0] is JsonValue a && a.TryGetValue(out double chosen)
                && two[1] is JsonValue b && b.TryGetValue(out double rejected)
                ? (chosen, rejected) : throw Bad($"'{key}' row {i + 1} is not two numbers"))];
        }
        var (t, v) = (Values("train"), Values("validation"));
        return t.Length == train && v.Length == validation ? (t, v) : null;
    }
}
