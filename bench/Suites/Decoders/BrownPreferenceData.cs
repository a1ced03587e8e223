using System.Text.Json;
using SharpTune.Data;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// The preference suite's data, cut from data/brown-text with GPT-2's tokenizer: each text is cut into windows of P + C
/// tokens (within the text, never across two), and the windows a set needs are taken spread evenly over the file.
/// <para>
/// Pairs, the genre the only consistent signal: pair k takes the k-th fiction window f (K–R) and the k-th informative
/// window i (A–J); chosen is f's continuation and rejected i's, and the prompt is f's for even k, i's for odd k. So half
/// the chosen continuations are the prompt's true one and half the rejected are: coherence with the prompt does not tell
/// which side is chosen, the genre does. Training pairs come from the training files, held-out pairs from the test files.
/// </para>
/// <para>Classifier chunks: the continuations (C tokens) of windows of both genres, labelled imaginative or informative.</para>
/// </summary>
public static class BrownPreferenceData
{
    public const string Imaginative = GenrePairs.Imaginative, Informative = GenrePairs.Informative;

    /// <summary><paramref name="count"/> windows of one file, spread evenly over all the windows it holds.</summary>
    public static IReadOnlyList<GenreWindow> Windows(BenchContext context, BrownPreferencePlan plan, string split, bool imaginative, int count, int offset = 0)
    {
        string path = BrownLmData.Path(context, split, informative: !imaginative);
        var tokenizer = BrownLmData.Tokenizer;
        var all = new List<(int[] Ids, string Source)>();
        foreach (var text in LanguageModelData.Read(path).Examples)
        {
            var ids = tokenizer.Encode(text.Text ?? throw new InvalidDataException($"{text.Source}: expected a \"text\" row"), addSpecialTokens: false).ToArray();
            for (int start = 0; start + plan.WindowTokens <= ids.Length; start += plan.WindowTokens)
                all.Add((ids[start..(start + plan.WindowTokens)], $"{text.Source} tokens {start}-{start + plan.WindowTokens}"));
        }
        if (all.Count < 2 * count)
            throw new InvalidDataException($"{path}: {all.Count} windows of {plan.WindowTokens} tokens, fewer than the {2 * count} the plan spreads over");
        // Window k of the set is number (k·n/count + offset) of the file: offset 1 takes a disjoint set beside the first.
        return Enumerable.Range(0, count).Select(k =>
        {
            var (ids, source) = all[(int)((long)k * all.Count / count) + offset];
            return new GenreWindow(tokenizer.Decode(ids[..plan.PromptTokens]), tokenizer.Decode(ids[plan.PromptTokens..]), imaginative, source);
        }).ToList();
    }

    /// <summary>The pairs of one split, written as TRL's prompt/chosen/rejected JSONL; returns them.</summary>
    public static IReadOnlyList<PreferencePair> WritePairs(BenchContext context, BrownPreferencePlan plan, string split, int count, string path)
    {
        var rows = GenrePairs.Of(Windows(context, plan, split, imaginative: true, count), Windows(context, plan, split, imaginative: false, count));
        File.WriteAllLines(path, rows.Select(r => JsonSerializer.Serialize(r)));
        return PreferenceData.Read(path).Examples;
    }

    /// <summary>
    /// Classifier chunks of one split, <paramref name="perGenre"/> of each genre, interleaved, as text/label JSONL: the
    /// continuations of windows taken one past the spread positions (offset 1), mostly other windows than the pairs'.
    /// </summary>
    public static void WriteChunks(BenchContext context, BrownPreferencePlan plan, string split, int perGenre, string path)
    {
        var fiction = Windows(context, plan, split, imaginative: true, perGenre, offset: 1);
        var informative = Windows(context, plan, split, imaginative: false, perGenre, offset: 1);
        File.WriteAllLines(path, fiction.Zip(informative).SelectMany(p => new[] { p.First, p.Second }).Select(w =>
            JsonSerializer.Serialize(new Dictionary<string, string> { ["text"] = w.Continuation, ["label"] = w.Imaginative ? Imaginative : Informative })));
    }
}
