using SharpTune.Metrics;

namespace SharpTune.Tests.Metrics;

public class TextOverlapTests
{
    [Fact]
    public void Rouge_L_is_the_F_measure_of_the_longest_common_subsequence()
    {
        // LCS of "the cat sat on the mat" and "the cat lay on a mat" is "the cat on mat" (4): P = 4/6, R = 4/6.
        Assert.Equal(4.0 / 6, TextOverlap.RougeL("the cat sat on the mat", "the cat lay on a mat"), 12);
        // P = 2/2, R = 2/4: F = 2PR/(P+R) = 2/3.
        Assert.Equal(2.0 / 3, TextOverlap.RougeL("police killed", "police killed the gunman"), 12);
        Assert.Equal(1, TextOverlap.RougeL("Same Words", "same  words"));
        Assert.Equal(0, TextOverlap.RougeL("nothing shared", "other text"));
        Assert.Equal(0, TextOverlap.RougeL("", "reference"));
    }

    [Fact]
    public void Exact_match_ignores_surrounding_whitespace_only()
    {
        Assert.True(TextOverlap.ExactMatch(" yes\n", "yes"));
        Assert.False(TextOverlap.ExactMatch("Yes", "yes"));
    }
}
