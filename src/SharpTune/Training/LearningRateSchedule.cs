using TorchSharp;

namespace SharpTune.Training;

/// <summary>The shape of a learning-rate schedule; the CLI names are the lower-case names.</summary>
public enum LearningRateScheduleKind
{
    /// <summary>1 after the warm-up (HF <c>get_constant_schedule_with_warmup</c>).</summary>
    Constant,
    /// <summary>Linear decay to 0 at the last step (HF <c>get_linear_schedule_with_warmup</c>).</summary>
    Linear,
    /// <summary>Half a cosine from 1 to 0 at the last step (HF <c>get_cosine_schedule_with_warmup</c>).</summary>
    Cosine,
}

/// <summary>
/// A learning-rate schedule as a pure function from step to a multiplier of the base learning rate.
/// Follows the Hugging Face transformers schedules: <paramref name="WarmupSteps"/> of linear warm-up
/// from 0, then constant, linear decay or cosine decay (0.5 cycles) reaching 0 at
/// <paramref name="TotalSteps"/>.
/// </summary>
/// <remarks>
/// <c>step</c> is the number of optimizer steps already taken, so the first update uses
/// <c>Multiplier(0)</c> (0 when there is a warm-up), exactly as HF's <c>LambdaLR</c> before its first
/// <c>scheduler.step()</c>. Past <see cref="TotalSteps"/> the decaying schedules stay at 0 (HF's
/// cosine would rise again).
/// </remarks>
/// <param name="Kind">Which schedule.</param>
/// <param name="WarmupSteps">Steps of linear warm-up from 0 to 1; 0 for none.</param>
/// <param name="TotalSteps">Steps of the whole run, warm-up included; the decaying schedules reach 0 here.</param>
public sealed record LearningRateSchedule(LearningRateScheduleKind Kind, long WarmupSteps, long TotalSteps)
{
    /// <summary>The names <see cref="Parse"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["constant", "linear", "cosine"];

    /// <summary>Constant schedule, with an optional warm-up; needs no step count (a constant ignores TotalSteps, so it is set to the least valid value).</summary>
    public static LearningRateSchedule Constant(long warmupSteps = 0) =>
        new LearningRateSchedule(LearningRateScheduleKind.Constant, warmupSteps, Math.Max(warmupSteps, 1)).Validate();

    /// <summary>Linear warm-up, then linear decay to 0 at <paramref name="totalSteps"/>.</summary>
    public static LearningRateSchedule Linear(long warmupSteps, long totalSteps) =>
        new LearningRateSchedule(LearningRateScheduleKind.Linear, warmupSteps, totalSteps).Validate();

    /// <summary>Linear warm-up, then half a cosine down to 0 at <paramref name="totalSteps"/>.</summary>
    public static LearningRateSchedule Cosine(long warmupSteps, long totalSteps) =>
        new LearningRateSchedule(LearningRateScheduleKind.Cosine, warmupSteps, totalSteps).Validate();

    /// <summary>The schedule a user names (<c>--lr-schedule cosine</c>), case-insensitive.</summary>
    /// <exception cref="ArgumentException">Unknown name (the message lists the valid ones) or bad step counts.</exception>
    public static LearningRateSchedule Parse(string name, long warmupSteps, long totalSteps) => ParseKind(name) switch
    {
        LearningRateScheduleKind.Constant => new LearningRateSchedule(LearningRateScheduleKind.Constant, warmupSteps, totalSteps).Validate(),
        LearningRateScheduleKind.Linear => Linear(warmupSteps, totalSteps),
        _ => Cosine(warmupSteps, totalSteps),
    };

    /// <summary>The kind a name stands for, case-insensitive.</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the valid ones.</exception>
    public static LearningRateScheduleKind ParseKind(string name) => name?.Trim().ToLowerInvariant() switch
    {
        "constant" => LearningRateScheduleKind.Constant,
        "linear" => LearningRateScheduleKind.Linear,
        "cosine" => LearningRateScheduleKind.Cosine,
        _ => throw new ArgumentException($"Unknown learning-rate schedule '{name}'; valid names: {string.Join(", ", Names)}", nameof(name)),
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming the first step count that is out of range.</summary>
    public LearningRateSchedule Validate()
    {
        if (!Enum.IsDefined(Kind))
            throw new ArgumentException($"Unknown learning-rate schedule kind {(int)Kind}", nameof(Kind));
        if (WarmupSteps < 0)
            throw new ArgumentException($"warmup_steps must be >= 0, got {WarmupSteps}", nameof(WarmupSteps));
        if (TotalSteps <= 0)
            throw new ArgumentException($"total_steps must be positive, got {TotalSteps}", nameof(TotalSteps));
        if (WarmupSteps > TotalSteps)
            throw new ArgumentException($"warmup_steps ({WarmupSteps}) must not exceed total_steps ({TotalSteps})", nameof(WarmupSteps));
        return this;
    }

    /// <summary>The factor of the base learning rate for the update after <paramref name="step"/> steps, in [0, 1].</summary>
    public double Multiplier(long step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        if (step < WarmupSteps)
            return (double)step / WarmupSteps;
        if (Kind == LearningRateScheduleKind.Constant)
            return 1.0;
        // HF's formulas, with max(1, ...) so warm-up == total does not divide by 0.
        var decaySteps = (double)Math.Max(1, TotalSteps - WarmupSteps);
        if (Kind == LearningRateScheduleKind.Linear)
            return Math.Max(0.0, (TotalSteps - step) / decaySteps);
        // Clamped at 1: past the end the cosine would climb back up.
        var progress = Math.Min(1.0, (step - WarmupSteps) / decaySteps);
        return 0.5 * (1.0 + Math.Cos(Math.PI * progress));
    }
}

/// <summary>
/// Drives an optimizer's learning rates by a <see cref="LearningRateSchedule"/>: each parameter group
/// gets its own base rate (the rate it had when this was created) times the schedule's multiplier,
/// so groups with different rates (encoder vs. head) keep their ratio.
/// </summary>
public sealed class LearningRateScheduler
{
    readonly torch.optim.Optimizer optimizer;
    readonly double[] baseRates;

    public LearningRateSchedule Schedule { get; }

    /// <summary>The rate of each parameter group at creation, in <c>ParamGroups</c> order.</summary>
    public IReadOnlyList<double> BaseLearningRates => baseRates;

    /// <summary>Captures the base rates and sets the rates for step 0 (0 when there is a warm-up).</summary>
    public LearningRateScheduler(torch.optim.Optimizer optimizer, LearningRateSchedule schedule)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        this.optimizer = optimizer;
        Schedule = schedule.Validate();
        baseRates = optimizer.ParamGroups.Select(group => group.LearningRate).ToArray();
        Apply(0);
    }

    /// <summary>
    /// Sets every group's rate for the update after <paramref name="step"/> optimizer steps; call it
    /// before each <c>optimizer.step()</c> with the number of steps taken so far.
    /// </summary>
    public void Apply(long step)
    {
        var multiplier = Schedule.Multiplier(step);
        var index = 0;
        foreach (var group in optimizer.ParamGroups)
        {
            if (index >= baseRates.Length)
                throw new InvalidOperationException($"The optimizer has more parameter groups than the {baseRates.Length} it had when the scheduler was created");
            group.LearningRate = baseRates[index++] * multiplier;
        }
    }
}
