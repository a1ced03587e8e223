using SharpTune.Models.Bert;

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
    /// <summary>The key PEFT matches against: the encoder path inside a transformers task model.</summary>
    static string PeftModuleKey(string path) => "bert." + path;

    /// <summary>Whether <paramref name="target"/> names the Linear at <paramref name="path"/> (an encoder path such as <c>encoder.layer.3.attention.self.query</c>).</summary>
    public static bool Matches(string path, string target)
    {
        string key = PeftModuleKey(path);
        return key == target || key.EndsWith("." + target, StringComparison.Ordinal);
    }

    public static bool MatchesAny(string path, IEnumerable<string> targets) => targets.Any(t => Matches(path, t));

    /// <summary>
    /// IA3's feed-forward test, which PEFT (<c>_check_target_module_feedforward</c>) does with a plain
    /// <c>endswith</c>, without the dot: kept identical so an adapter means the same thing in both.
    /// </summary>
    public static bool MatchesFeedForward(string path, IEnumerable<string> feedForward) =>
        feedForward.Any(f => PeftModuleKey(path).EndsWith(f, StringComparison.Ordinal));

    /// <summary>
    /// Throws <see cref="ArgumentException"/> naming <paramref name="option"/> when the list is empty or a
    /// target matches no Linear layer of a model with <paramref name="config"/>.
    /// </summary>
    public static void Validate(IReadOnlyList<string>? targets, BertConfig config, string option, string parameterName)
    {
        if (targets is null || targets.Count == 0)
            throw new ArgumentException($"{option} needs at least one target module (such as query, value)", parameterName);
        var paths = LinearFactories.Paths(config);
        var unknown = targets.Where(t => string.IsNullOrWhiteSpace(t) || !paths.Any(p => Matches(p, t))).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException(
                $"{option}: {string.Join(", ", unknown.Select(t => $"'{t}'"))} match(es) no Linear layer of this model; a target names " +
                "the layers whose path ends with it: query, key, value, attention.output.dense, intermediate.dense, output.dense " +
                "(both attention.output.dense and the feed-forward one, as in PEFT), dense, pooler.dense, or a full path " +
                "such as encoder.layer.0.attention.self.query", parameterName);
    }
}
