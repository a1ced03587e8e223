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
}
