namespace SharpTune.Metrics;

/// <summary>Token-task scores: entity-level precision/recall/F1 (exact span and type) and token accuracy.</summary>
/// <param name="Tokens">Number of scored tokens (labelled ones only, for the id overload).</param>
/// <param name="TokenAccuracy">Fraction of scored tokens whose tag is right, O included (conlleval's "accuracy").</param>
/// <param name="PerType">Every entity type seen in gold or predictions, sorted ordinally.</param>
public sealed record TokenReport(
    int Sentences,
    int Tokens,
    double TokenAccuracy,
    double Precision,
    double Recall,
    double F1,
    int GoldEntities,
    int PredictedEntities,
    int CorrectEntities,
    IReadOnlyList<LabelScores> PerType) : IMetricReport
{
    public string ToJson() => ReportFormat.Json(this);

    public string ToTable() =>
        $"entity F1 {ReportFormat.Number(F1)} (precision {ReportFormat.Number(Precision)}, recall {ReportFormat.Number(Recall)})  " +
        $"token accuracy {ReportFormat.Number(TokenAccuracy)}  sentences {Sentences}  tokens {Tokens}\n" +
        $"entities: {GoldEntities} gold, {PredictedEntities} predicted, {CorrectEntities} correct\n\n" +
        ReportFormat.Table(["type", .. ReportFormat.ScoreHeader[1..]], ReportFormat.ScoreRows(PerType));
}

public static class TokenMetrics
{
    /// <summary>Scores tag sequences, one per sentence (see <see cref="BioTags"/> for how entities are read).</summary>
    /// <exception cref="ArgumentException">Sentence counts or lengths differ, or there are no sentences.</exception>
    public static TokenReport Compute(IReadOnlyList<IReadOnlyList<string>> predictions, IReadOnlyList<IReadOnlyList<string>> gold)
    {
        ReportFormat.SameLength(predictions.Count, gold.Count, "sentences");
        var counts = new SortedDictionary<string, int[]>(StringComparer.Ordinal); // type -> [correct, predicted, support]
        int[] Of(string type) => counts.TryGetValue(type, out var c) ? c : counts[type] = new int[3];
        int tokens = 0, rightTokens = 0;
        for (int s = 0; s < gold.Count; s++)
        {
            if (predictions[s].Count != gold[s].Count)
                throw new ArgumentException($"sentence {s} has {predictions[s].Count} predicted and {gold[s].Count} gold tags");
            tokens += gold[s].Count;
            for (int t = 0; t < gold[s].Count; t++)
                if (predictions[s][t] == gold[s][t]) rightTokens++;
            var goldEntities = BioTags.Entities(gold[s]);
            var predictedEntities = BioTags.Entities(predictions[s]);
            var goldSet = goldEntities.ToHashSet();
            foreach (var e in goldEntities) Of(e.Type)[2]++;
            foreach (var e in predictedEntities)
            {
                var c = Of(e.Type);
                c[1]++;
                if (goldSet.Contains(e)) c[0]++;
            }
        }
        var perType = counts.Select(kv => LabelScores.FromCounts(kv.Key, kv.Value[0], kv.Value[1], kv.Value[2])).ToArray();
        int correct = perType.Sum(t => t.Correct), predicted = perType.Sum(t => t.Predicted), support = perType.Sum(t => t.Support);
        var overall = LabelScores.FromCounts("overall", correct, predicted, support);
        return new TokenReport(
            gold.Count, tokens, LabelScores.Ratio(rightTokens, tokens),
            overall.Precision, overall.Recall, overall.F1,
            support, predicted, correct, perType);
    }

    /// <summary>
    /// Scores label ids as the trainer produces them: positions whose gold id is
    /// <paramref name="ignoreIndex"/> (special tokens, non-first sub-words) are dropped before the
    /// ids are turned into tag names, as Hugging Face's token-classification example does.
    /// </summary>
    public static TokenReport Compute(IReadOnlyList<IReadOnlyList<int>> predictions, IReadOnlyList<IReadOnlyList<int>> gold, IReadOnlyList<string> labelNames, int ignoreIndex = -100)
    {
        ReportFormat.SameLength(predictions.Count, gold.Count, "sentences");
        var predictedTags = new List<IReadOnlyList<string>>(gold.Count);
        var goldTags = new List<IReadOnlyList<string>>(gold.Count);
        for (int s = 0; s < gold.Count; s++)
        {
            if (predictions[s].Count != gold[s].Count)
                throw new ArgumentException($"sentence {s} has {predictions[s].Count} predicted and {gold[s].Count} gold ids");
            var p = new List<string>();
            var g = new List<string>();
            for (int t = 0; t < gold[s].Count; t++)
            {
                if (gold[s][t] == ignoreIndex) continue;
                g.Add(Name(gold[s][t], labelNames, s, t, "gold"));
                p.Add(Name(predictions[s][t], labelNames, s, t, "predicted"));
            }
            predictedTags.Add(p);
            goldTags.Add(g);
        }
        return Compute(predictedTags, goldTags);
    }

    /// <summary>Fraction of labelled positions (gold id not <paramref name="ignoreIndex"/>) predicted right.</summary>
    public static double TokenAccuracy(IReadOnlyList<IReadOnlyList<int>> predictions, IReadOnlyList<IReadOnlyList<int>> gold, int ignoreIndex = -100)
    {
        ReportFormat.SameLength(predictions.Count, gold.Count, "sentences");
        int labelled = 0, right = 0;
        for (int s = 0; s < gold.Count; s++)
        {
            if (predictions[s].Count != gold[s].Count)
                throw new ArgumentException($"sentence {s} has {predictions[s].Count} predicted and {gold[s].Count} gold ids");
            for (int t = 0; t < gold[s].Count; t++)
            {
                if (gold[s][t] == ignoreIndex) continue;
                labelled++;
                if (predictions[s][t] == gold[s][t]) right++;
            }
        }
        return LabelScores.Ratio(right, labelled);
    }

    static string Name(int id, IReadOnlyList<string> labelNames, int sentence, int token, string which) =>
        id >= 0 && id < labelNames.Count ? labelNames[id]
            : throw new ArgumentException($"{which} id {id} at sentence {sentence}, token {token} is outside 0..{labelNames.Count - 1}");
}
