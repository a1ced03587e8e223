using SharpTune.Models.Bert;

namespace SharpTune.Peft.IA3;

/// <summary>
/// IA3's options (follows PEFT's <c>IA3Config</c>): <c>target_modules</c> and the subset of them that are
/// <c>feedforward_modules</c>. PEFT's BERT defaults are targets key, value, output.dense with output.dense
/// feed-forward; by PEFT's matching (see <see cref="LinearTargets"/>) "output.dense" selects both
/// <c>attention.output.dense</c> and the FFN's <c>output.dense</c>, and both count as feed-forward.
/// </summary>
public sealed record Ia3Options(IReadOnlyList<string> Targets, IReadOnlyList<string> FeedForward)
{
    public static Ia3Options From(PeftSettings settings, BertConfig config)
    {
        LinearTargets.Validate(settings.Ia3Targets, config, "--ia3-targets", nameof(PeftSettings.Ia3Targets));
        var feedForward = settings.Ia3FeedForward ?? [];
        // PEFT's IA3Config.__post_init__ demands the same: feedforward_modules a subset of target_modules.
        var outside = feedForward.Where(f => !settings.Ia3Targets.Contains(f)).ToList();
        if (outside.Count > 0)
            throw new ArgumentException(
                $"--ia3-feedforward: {string.Join(", ", outside.Select(f => $"'{f}'"))} must also be listed in --ia3-targets ({string.Join(", ", settings.Ia3Targets)})",
                nameof(PeftSettings.Ia3FeedForward));
        return new Ia3Options(settings.Ia3Targets.ToList(), feedForward.ToList());
    }

    public bool Wraps(string path) => LinearTargets.MatchesAny(path, Targets);

    public bool IsFeedForward(string path) => LinearTargets.MatchesFeedForward(path, FeedForward);
}
