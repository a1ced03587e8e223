using SharpTune.Bench.Suites;

namespace SharpTune.Tests.Bench.Suites;

/// <summary>The speed suite's ratios: taken within each round of actions run in turns, reported as the median with its spread.</summary>
public class TimingTests
{
    [Fact]
    public void Actions_take_turns_in_a_rotating_order_after_a_warm_up_round()
    {
        var order = new List<string>();
        var times = Timing.InTurns(3, 2, () => order.Add("a"), () => order.Add("b"), () => order.Add("c"));
        // warm-up a b c, then rounds starting with a, b and c in turn; each action twice in a row
        Assert.Equal("aabbcc" + "aabbcc" + "bbccaa" + "ccaabb", string.Concat(order));
        Assert.Equal(3, times.Rounds);
    }

    [Fact]
    public void The_ratio_is_the_median_of_the_rounds_ratios_with_their_spread()
    {
        // One disturbed round (the second: the numerator slowed tenfold) moves the median little, and shows in the spread.
        var spread = RatioSpread.Of([1.1, 11.0, 1.2, 0.9, 1.15]);
        Assert.Equal(1.15, spread.Median);
        Assert.Equal(0.9, spread.Min);
        Assert.Equal(11.0, spread.Max);
        Assert.Equal(4, spread.AboveOne);
        Assert.Equal(1.15, RatioSpread.Of([1.2, 1.1]).Median, 12);
        Assert.Throws<ArgumentException>(() => RatioSpread.Of([]));
    }

    [Fact]
    public void Ratios_are_taken_within_each_round()
    {
        // The second action takes twice the first's time in every round while the machine slows from round to round:
        // each round's ratio is 2, although the first action's slowest round is slower than the second's fastest.
        var times = new TurnTimes(new double[,] { { 1, 2 }, { 10, 20 }, { 3, 6 } });
        var ratio = times.Ratio(1, 0);
        Assert.Equal((2.0, 2.0, 2.0, 3), (ratio.Median, ratio.Min, ratio.Max, ratio.AboveOne));
        Assert.Equal(1, times.Best(0));
        Assert.Equal(0.5, times.Ratio(0, 1).Median);
    }
}
