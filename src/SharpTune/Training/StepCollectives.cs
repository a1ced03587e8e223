using System.Diagnostics;

namespace SharpTune.Training;

/// <summary>
/// Where one rank's optimizer steps go in a data-parallel run: the whole step (from the end of the previous gradient
/// reduction to the end of this one), the per-step exchange of the loss (where a rank that finished its shard first
/// waits for the others: the time is the imbalance between the ranks, not the bytes), and the wait for the gradients'
/// sum after the last backward (with the copies into and out of the buckets). The last run's record is kept per
/// thread, so the job's report reads it after the trainer returns (ranks that are threads of one test process keep theirs).
/// </summary>
public sealed class StepCollectives
{
    /// <summary>Steps left out of the means: the first steps warm up libtorch's and .NET's code paths and caches.</summary>
    public const int WarmupSteps = 2;

    [ThreadStatic] static StepCollectives? last;

    readonly List<Step> steps = [];
    long stepStart = Stopwatch.GetTimestamp();
    double exchange;

    public StepCollectives() => last = this;

    /// <summary>The record of the last run trained on this thread, or null.</summary>
    public static StepCollectives? Last => last;

    /// <param name="Seconds">The whole step on this rank.</param>
    /// <param name="Exchange">The per-step loss exchange, summed over the step's micro-steps.</param>
    /// <param name="Gradients">The wait for the gradients' sum after the last backward, with the bucket copies.</param>
    /// <param name="InBackward">Starting sums and letting them progress during backward (copies, MPI calls).</param>
    public readonly record struct Step(double Seconds, double Exchange, double Gradients, double InBackward = 0);

    public IReadOnlyList<Step> Steps => steps;

    /// <summary>Adds the time since <paramref name="start"/> (a <see cref="Stopwatch.GetTimestamp"/>) to this step's exchange.</summary>
    public void AddExchange(long start) => exchange += Stopwatch.GetElapsedTime(start).TotalSeconds;

    /// <summary>Buckets per step, and how many of them the last step started during backward (overlapped).</summary>
    public (int Overlapped, int Buckets) LastOverlap { get; private set; }

    /// <summary>
    /// Ends a step whose gradient reduction began at <paramref name="reductionStart"/>, after <paramref name="inBackward"/>
    /// seconds of it during backward; <paramref name="overlapped"/> of its <paramref name="buckets"/> started during backward.
    /// </summary>
    public void EndStep(long reductionStart, double inBackward = 0, int overlapped = 0, int buckets = 0)
    {
        LastOverlap = (overlapped, buckets);
        long now = Stopwatch.GetTimestamp();
        steps.Add(new Step(Stopwatch.GetElapsedTime(stepStart, now).TotalSeconds, exchange, Stopwatch.GetElapsedTime(reductionStart, now).TotalSeconds, inBackward));
        stepStart = now;
        exchange = 0;
    }

    /// <summary>The mean step after the warm-up steps (over every step when there are no more), and how many steps it covers.</summary>
    public (int Count, Step Mean) Timed()
    {
        var timed = steps.Count > WarmupSteps ? steps.Skip(WarmupSteps).ToList() : steps;
        if (timed.Count == 0) return (0, default);
        return (timed.Count, new Step(timed.Average(s => s.Seconds), timed.Average(s => s.Exchange), timed.Average(s => s.Gradients), timed.Average(s => s.InBackward)));
    }

    /// <summary>The exchange and gradient time of every step, during backward and after, warm-up included (the steps' part of the run's collectives).</summary>
    public double TotalSeconds => steps.Sum(s => s.Exchange + s.Gradients + s.InBackward);
}
