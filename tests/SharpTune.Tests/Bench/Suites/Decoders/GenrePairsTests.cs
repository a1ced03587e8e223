using SharpTune.Bench.Suites.Decoders;

namespace SharpTune.Tests.Bench.Suites.Decoders;

/// <summary>The preference suite's pairs carry the genre as their only consistent signal.</summary>
public class GenrePairsTests
{
    static IReadOnlyList<GenreWindow> Windows(bool imaginative, int count) =>
        Enumerable.Range(0, count).Select(k => new GenreWindow($"{(imaginative ? "f" : "i")}-prompt-{k}", $"{(imaginative ? "f" : "i")}-continuation-{k}", imaginative, $"{k}")).ToList();

    [Fact]
    public void Chosen_is_always_fiction_and_half_the_prompts_are_the_rejected_sides_own()
    {
        var pairs = GenrePairs.Of(Windows(true, 7), Windows(false, 7));

        Assert.Equal(7, pairs.Count);
        Assert.All(pairs, p => Assert.StartsWith("f-continuation-", p["chosen"]));
        Assert.All(pairs, p => Assert.StartsWith("i-continuation-", p["rejected"]));
        // The prompt is the chosen side's own for even pairs, the rejected side's own for odd ones: coherence does not tell them apart.
        for (int k = 0; k < pairs.Count; k++)
        {
            string own = k % 2 == 0 ? $"f-prompt-{k}" : $"i-prompt-{k}";
            Assert.Equal(own, pairs[k]["prompt"]);
            Assert.Equal(k % 2 == 0 ? GenrePairs.Imaginative : GenrePairs.Informative, pairs[k]["prompt_genre"]);
        }
        Assert.Equal(4, pairs.Count(p => p["prompt_genre"] == GenrePairs.Imaginative));
    }

    [Fact]
    public void Windows_of_the_wrong_genre_or_count_are_refused()
    {
        Assert.Throws<ArgumentException>(() => GenrePairs.Of(Windows(true, 3), Windows(false, 2)));
        Assert.Throws<ArgumentException>(() => GenrePairs.Of(Windows(false, 2), Windows(false, 2)));
    }
}
