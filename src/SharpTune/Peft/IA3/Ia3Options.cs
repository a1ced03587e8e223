using SharpTune.Models;

namespace SharpTune.Peft.IA3;

/// <summary>
/// IA3's options (follows PEFT's <c>IA3Config</c>): <c>target_modules</c> and the subset of them that are
/// <c>feedforward_modules</c>. PEFT's BERT defaults are targets key, value, output.dense with output.dense
/// feed-forward; by PEFT's matching (see <see cref="LinearTargets"/>) "output.dense" selects both
/// <c>attention.output.dense</c> and the FFN's <c>output.dense</c>, and both count as feed-forward.
/// </summary>
public sealed record Ia3Options(IBackboneShape Backbone, IReadOnlyList<string> Targets, IReadOnlyList<string> FeedForward)
{
    public static Ia3Options From(PeftSettings settings, IBackboneShape backbone)
    {
        var targets = settings.Ia3Targets ?? backbone.Names.Ia3Targets;
        LinearTargets.Validate(targets, backbone, "--ia3-targets", nameof(PeftSettings.Ia3Targets));
        // PEFT fills feedforward_modules from its table when none are given; of those, the ones among the targets count.
        var feedForward = settings.Ia3FeedForward ?? backbone.Names.Ia3FeedForward.Where(targets.Contains).ToList();
        // PEFT's IA3Config.__post_init__ demands the same: feedforward_modules a subset of target_modules.
        var outside = feedForward.Where(f => !targets.Contains(f)).ToList();
        if (outside.Count > 0)
            throw new ArgumentException(
                $"--ia3-feedforward: {string.Join(", ", outside.Select(f => $"'{f}'"))} must also be listed in --ia3-targets ({string.Join(", ", targets)})",
                nameof(PeftSettings.Ia3FeedForward));
        return new Ia3Options(backbone, targets.ToList(), feedForward.ToList());
    }

    public bool Wraps(string path) => LinearTargets.MatchesAny(Backbone, path, Targets);

    public bool IsFeedForward(string path) => LinearTargets.MatchesFeedForward(Backbone, path, FeedForward);
}
