using SharpTune.Models;

namespace SharpTune.Peft;

/// <summary>
/// Which Linear layers a method wraps, matched as PEFT matches a list of <c>target_modules</c>
/// (<c>check_target_module_exists</c>): a target names a module when the module's key equals it or ends
/// with <c>.{target}</c>. PEFT sees the key inside <c>BertForSequenceClassification</c>
/// (<c>bert.encoder.layer.0.attention.self.query</c>), so the same is matched here: <c>query</c>,
/// <c>self.query</c>, <c>encoder.layer.0.attention.self.query</c> and the full <c>bert.</c> key all work.
/// A consequence worth knowing: <c>output.dense</c> matches both <c>attention.output.dense</c> and the
/// feed-forward <c>output.dense</c>, exactly as in PEFT.
/// </summary>
public static class LinearTargets
{
    /// <summary>PEFT's shorthand for every Linear layer of the backbone (the output head is not one of them).</summary>
    public const string AllLinear = "all-linear";

    /// <summary>Whether <paramref name="target"/> names the Linear at <paramref name="path"/> (a factory path such as <c>encoder.layer.3.attention.self.query</c>).</summary>
    public static bool Matches(IBackboneShape backbone, string path, string target)
    {
        if (target == AllLinear) return true;
        string key = backbone.Names.PeftPrefix + path;
        return key == target || key.EndsWith("." + target, StringComparison.Ordinal);
    }

    public static bool MatchesAny(IBackboneShape backbone, string path, IEnumerable<string> targets) => targets.Any(t => Matches(backbone, path, t));

    /// <summary>
    /// IA3's feed-forward test, which PEFT (<c>_check_target_module_feedforward</c>) does with a plain
    /// <c>endswith</c>, without the dot: kept identical so an adapter means the same thing in both.
    /// </summary>
    public static bool MatchesFeedForward(IBackboneShape backbone, string path, IEnumerable<string> feedForward) =>
        feedForward.Any(f => f == AllLinear || (backbone.Names.PeftPrefix + path).EndsWith(f, StringComparison.Ordinal));

    /// <summary>
    /// Throws <see cref="ArgumentException"/> naming <paramref name="option"/> when the list is empty or a
    /// target matches no Linear layer of <paramref name="backbone"/>.
    /// </summary>
    public static void Validate(IReadOnlyList<string>? targets, IBackboneShape backbone, string option, string parameterName)
    {
        var sites = backbone.LinearSites;
        var examples = sites.Select(s => s.Path[(s.Path.LastIndexOf('.') + 1)..]).Distinct().ToList();
        if (targets is null || targets.Count == 0)
            throw new ArgumentException($"{option} needs at least one target module (such as {string.Join(", ", examples.Take(2))})", parameterName);
        var unknown = targets.Where(t => string.IsNullOrWhiteSpace(t) || !sites.Any(s => Matches(backbone, s.Path, t))).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException(
                $"{option}: {string.Join(", ", unknown.Select(t => $"'{t}'"))} match(es) no Linear layer of this {backbone.Family} model; a target names " +
                $"the layers whose path ends with it: {string.Join(", ", examples)}, {AllLinear}, or a longer part of a path " +
                $"such as {sites[0].Path}" +
                (backbone.Names.TargetNote is { } note ? $" ({note})" : ""),
                parameterName);
    }
}
