using System.Diagnostics;

namespace SharpTune.Bench.Suites;

/// <summary>Wall-clock timings that keep the least disturbed run, for a noisy machine.</summary>
public static class Timing
{
    /// <summary>Best of <paramref name="repeats"/> timings after one warm-up call.</summary>
    public static double Seconds(Action action, int repeats)
    {
        action();
        double best = double.MaxValue;
        for (int i = 0; i < repeats; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return best;
    }

    /// <summary>
    /// Best time of each action over <paramref name="rounds"/> rounds; within a round each action runs three
    /// times in a row, the actions taking turns (after one warm-up round). Runs in a row matter: both engines
    /// keep their worker threads spinning for a moment after a call, which slows whatever runs right after;
    /// the best of three in a row is a run the other engine's threads no longer disturbed.
    /// </summary>
    public static double[] Interleaved(int rounds, params Action[] actions)
    {
        var best = Enumerable.Repeat(double.MaxValue, actions.Length).ToArray();
        for (int round = 0; round <= rounds; round++)
            for (int i = 0; i < actions.Length; i++)
                for (int run = 0; run < 3; run++)
                {
                    var clock = Stopwatch.StartNew();
                    actions[i]();
                    if (round > 0) best[i] = Math.Min(best[i], clock.Elapsed.TotalSeconds);
                }
        return best;
    }

    /// <summary>The machine's one-minute load average (NaN where /proc/loadavg is missing); above the logical cores, threads wait for a core.</summary>
    public static double LoadAverage() => File.Exists("/proc/loadavg")
        ? double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) : double.NaN;

    /// <summary>
    /// Times the actions in turns over <paramref name="rounds"/> rounds after one warm-up round: in each round every action
    /// runs <paramref name="runsInARow"/> times in a row (the best of them is its time in that round, a run the other
    /// engine's still-spinning threads no longer disturb), and the order rotates from round to round (A B, B A, ...), so
    /// no action always follows the same one. A ratio is then taken within each round, where both sides met the same
    /// moment of the machine, and reported as the median of the rounds with their spread (<see cref="TurnTimes.Ratio"/>).
    /// </summary>
    public static TurnTimes InTurns(int rounds, int runsInARow, params Action[] actions)
    {
        if (rounds < 1 || runsInARow < 1) throw new ArgumentOutOfRangeException(nameof(rounds), "at least one round of one run");
        var seconds = new double[rounds, actions.Length];
        for (int round = -1; round < rounds; round++)
            for (int turn = 0; turn < actions.Length; turn++)
            {
                int i = (turn + Math.Max(round, 0)) % actions.Length;
                double best = double.MaxValue;
                for (int run = 0; run < runsInARow; run++)
                {
                    var clock = Stopwatch.StartNew();
                    actions[i]();
                    best = Math.Min(best, clock.Elapsed.TotalSeconds);
                }
                if (round >= 0) seconds[round, i] = best;
            }
        return new TurnTimes(seconds);
    }
}

/// <summary>Each action's time in each round of <see cref="Timing.InTurns"/>: Seconds[round, action].</summary>
public sealed class TurnTimes(double[,] seconds)
{
    public int Rounds => seconds.GetLength(0);

    /// <summary>The action's time in one round.</summary>
    public double this[int round, int action] => seconds[round, action];

    /// <summary>The action's fastest round.</summary>
    public double Best(int action) => Enumerable.Range(0, Rounds).Min(r => seconds[r, action]);

    /// <summary>
    /// Time of <paramref name="numerator"/> over time of <paramref name="denominator"/>, round by round: with the slower
    /// engine on top, how many times faster the other is. One noisy round moves the median little, and the spread says
    /// whether a single run can be trusted for a yes or no (both ends on the same side of 1).
    /// </summary>
    public RatioSpread Ratio(int numerator, int denominator) =>
        RatioSpread.Of(Enumerable.Range(0, Rounds).Select(r => seconds[r, numerator] / seconds[r, denominator]).ToArray());
}

/// <summary>Per-round ratios: their median, smallest and largest, and how many of them exceed 1.</summary>
public sealed record RatioSpread(double Median, double Min, double Max, int AboveOne, int Rounds)
{
    public static RatioSpread Of(IReadOnlyList<double> ratios)
    {
        if (ratios.Count == 0) throw new ArgumentException("no rounds", nameof(ratios));
        var sorted = ratios.Order().ToArray();
        int middle = sorted.Length / 2;
        double median = sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
        return new RatioSpread(median, sorted[0], sorted[^1], sorted.Count(r => r > 1), sorted.Length);
    }

    /// <summary>The median, the spread and the count above 1 under <paramref name="name"/>, <c>_min</c>, <c>_max</c>, <c>_rounds_above_1</c>.</summary>
    public void Report(OrderedDictionary<string, double> metrics, string name)
    {
        metrics[name] = Median;
        metrics[name + "_min"] = Min;
        metrics[name + "_max"] = Max;
        metrics[name + "_rounds_above_1"] = AboveOne;
    }

    public override string ToString() =>
        $"{Median:F3}x median of {Rounds} rounds in turns ({Min:F3}x to {Max:F3}x; above 1 in {AboveOne} of {Rounds})";
}
