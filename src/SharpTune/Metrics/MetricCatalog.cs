namespace SharpTune.Metrics;

/// <summary>Whether a larger or a smaller value of a metric is the better model.</summary>
public enum MetricDirection
{
    HigherIsBetter,
    LowerIsBetter,
}

/// <summary>
/// Every validation metric SharpTune computes, each with its direction, so picking the best checkpoint and early
/// stopping never guess from a name. A metric missing here is an error, not a silent "higher is better".
/// </summary>
public static class MetricCatalog
{
    static readonly Dictionary<string, MetricDirection> Directions = new(StringComparer.Ordinal)
    {
        ["loss"] = MetricDirection.LowerIsBetter,
        ["perplexity"] = MetricDirection.LowerIsBetter,
        ["rouge_l"] = MetricDirection.HigherIsBetter,
        ["accuracy"] = MetricDirection.HigherIsBetter,
        ["macro_f1"] = MetricDirection.HigherIsBetter,
        ["macro_precision"] = MetricDirection.HigherIsBetter,
        ["macro_recall"] = MetricDirection.HigherIsBetter,
        ["micro_f1"] = MetricDirection.HigherIsBetter,
        ["exact_match"] = MetricDirection.HigherIsBetter,
        ["mse"] = MetricDirection.LowerIsBetter,
        ["mae"] = MetricDirection.LowerIsBetter,
        ["pearson"] = MetricDirection.HigherIsBetter,
        ["spearman"] = MetricDirection.HigherIsBetter,
        ["token_accuracy"] = MetricDirection.HigherIsBetter,
        ["entity_f1"] = MetricDirection.HigherIsBetter,
        ["entity_precision"] = MetricDirection.HigherIsBetter,
        ["entity_recall"] = MetricDirection.HigherIsBetter,
        // Preference tuning (TRL's rewards/*, logps/*): the chosen answer's reward and log-probability should rise, the rejected one's fall.
        ["reward_accuracy"] = MetricDirection.HigherIsBetter,
        ["reward_margin"] = MetricDirection.HigherIsBetter,
        ["rewards_chosen"] = MetricDirection.HigherIsBetter,
        ["rewards_rejected"] = MetricDirection.LowerIsBetter,
        ["logps_chosen"] = MetricDirection.HigherIsBetter,
        ["logps_rejected"] = MetricDirection.LowerIsBetter,
        ["log_odds_ratio"] = MetricDirection.HigherIsBetter,
        ["log_odds_chosen"] = MetricDirection.HigherIsBetter,
        ["nll"] = MetricDirection.LowerIsBetter,
    };

    public static IReadOnlyCollection<string> Names => Directions.Keys;

    public static MetricDirection DirectionOf(string metric) =>
        Directions.TryGetValue(metric, out var direction)
            ? direction
            : throw new ArgumentException($"metric '{metric}' has no declared direction; known metrics: {string.Join(", ", Directions.Keys)}");

    /// <summary>True when <paramref name="candidate"/> beats <paramref name="incumbent"/> on <paramref name="metric"/>.</summary>
    public static bool Improves(string metric, double candidate, double incumbent) =>
        DirectionOf(metric) == MetricDirection.LowerIsBetter ? candidate < incumbent : candidate > incumbent;
}
