namespace SharpTune.Bench.Suites.Decoders;

/// <summary>One window of a Brown text: P prompt tokens and the C tokens that follow them, decoded.</summary>
public sealed record GenreWindow(string Prompt, string Continuation, bool Imaginative, string Source);

/// <summary>
/// The preference suite's pairing, the genre the only consistent signal: every chosen continuation is fiction and every
/// rejected one informative prose, and the prompt is the chosen side's own in half the pairs and the rejected side's own
/// in the other half, so coherence with the prompt does not tell which side is chosen.
/// </summary>
public static class GenrePairs
{
    public const string Imaginative = "imaginative", Informative = "informative";

    /// <summary>
    /// Pair k of fiction window f and informative window i: chosen f's continuation, rejected i's, the prompt f's for
    /// even k and i's for odd k (with the prompt's genre and both windows' sources beside them).
    /// </summary>
    public static IReadOnlyList<Dictionary<string, string>> Of(IReadOnlyList<GenreWindow> fiction, IReadOnlyList<GenreWindow> informative)
    {
        if (fiction.Count != informative.Count || fiction.Any(w => !w.Imaginative) || informative.Any(w => w.Imaginative))
            throw new ArgumentException("expected as many fiction windows as informative ones, each of its genre");
        return fiction.Zip(informative).Select((p, k) => new Dictionary<string, string>
        {
            ["prompt"] = k % 2 == 0 ? p.First.Prompt : p.Second.Prompt, ["chosen"] = p.First.Continuation, ["rejected"] = p.Second.Continuation,
            ["prompt_genre"] = k % 2 == 0 ? Imaginative : Informative, ["chosen_source"] = p.First.Source, ["rejected_source"] = p.Second.Source,
        }).ToList();
    }
}
