using SharpTune.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

public sealed class LearningRateScheduleTests
{
    static void AssertMultipliers(LearningRateSchedule schedule, params (long Step, double Expected)[] points)
    {
        foreach (var (step, expected) in points)
            Assert.True(Math.Abs(schedule.Multiplier(step) - expected) < 1e-12, $"step {step}: expected {expected}, got {schedule.Multiplier(step)}");
    }

    [Fact]
    public void Constant_WithoutWarmup_IsOne()
    {
        AssertMultipliers(LearningRateSchedule.Constant(), (0, 1), (1, 1), (1000, 1));
    }

    [Fact]
    public void Constant_WithWarmup_RampsThenHolds()
    {
        AssertMultipliers(LearningRateSchedule.Constant(warmupSteps: 4), (0, 0), (1, 0.25), (2, 0.5), (3, 0.75), (4, 1), (50, 1));
    }

    [Fact]
    public void Linear_WarmsUpThenDecaysToZeroAtTotal()
    {
        // warm-up 2, total 10: step/2 below 2, then (10 - step) / 8.
        AssertMultipliers(LearningRateSchedule.Linear(2, 10),
            (0, 0), (1, 0.5), (2, 1), (3, 0.875), (6, 0.5), (9, 0.125), (10, 0), (15, 0));
    }

    [Fact]
    public void Linear_WithoutWarmup_StartsAtPeak()
    {
        AssertMultipliers(LearningRateSchedule.Linear(0, 4), (0, 1), (1, 0.75), (2, 0.5), (3, 0.25), (4, 0));
    }

    [Fact]
    public void Cosine_WarmsUpThenFollowsHalfACosine()
    {
        // warm-up 2, total 10: after the peak, 0.5 * (1 + cos(pi * (step - 2) / 8)).
        AssertMultipliers(LearningRateSchedule.Cosine(2, 10),
            (0, 0), (1, 0.5), (2, 1),
            (3, 0.5 * (1 + 0.9238795325112867)),                                // cos(pi/8)
            (4, 0.5 * (1 + 0.7071067811865476)),                                // cos(pi/4)
            (6, 0.5), (10, 0), (14, 0));
    }

    [Fact]
    public void Parse_AcceptsTheNamesAnyCase_AndListsThemOnError()
    {
        Assert.Equal(LearningRateScheduleKind.Cosine, LearningRateSchedule.Parse("Cosine", 1, 5).Kind);
        Assert.Equal(LearningRateSchedule.Linear(1, 5), LearningRateSchedule.Parse("linear", 1, 5));
        Assert.Equal(1.0, LearningRateSchedule.Parse("constant", 0, 5).Multiplier(5));
        Assert.Equal(LearningRateScheduleKind.Linear, LearningRateSchedule.ParseKind(" LINEAR "));
        var e = Assert.Throws<ArgumentException>(() => LearningRateSchedule.Parse("polynomial", 0, 10));
        Assert.Contains("'polynomial'", e.Message);
        Assert.Contains("constant, linear, cosine", e.Message);
    }

    [Fact]
    public void Validation_NamesTheBadStepCount()
    {
        Assert.Contains("must not exceed total_steps", Assert.Throws<ArgumentException>(() => LearningRateSchedule.Linear(11, 10)).Message);
        Assert.Contains("warmup_steps must be >= 0", Assert.Throws<ArgumentException>(() => LearningRateSchedule.Cosine(-1, 10)).Message);
        Assert.Contains("total_steps must be positive", Assert.Throws<ArgumentException>(() => LearningRateSchedule.Linear(0, 0)).Message);
        Assert.Throws<ArgumentException>(() => new LearningRateSchedule((LearningRateScheduleKind)7, 0, 1).Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.Linear(0, 10).Multiplier(-1));
        // Warm-up may take the whole run.
        AssertMultipliers(LearningRateSchedule.Linear(4, 4), (0, 0), (2, 0.5), (4, 0));
    }

    [Fact]
    public void Scheduler_ScalesEachParamGroupsBaseRate_AndTheOptimizerUsesIt()
    {
        var encoder = nn.Parameter(ones(3));
        var head = nn.Parameter(ones(2));
        var optimizer = optim.Adam(
            [new TorchSharp.Modules.Adam.ParamGroup([encoder], lr: 0.01), new TorchSharp.Modules.Adam.ParamGroup([head], lr: 0.1)],
            lr: 0.01);
        var scheduler = new LearningRateScheduler(optimizer, LearningRateSchedule.Linear(2, 6));
        Assert.Equal([0.01, 0.1], scheduler.BaseLearningRates);

        // Step 0 of the warm-up: rate 0, so an update leaves the weights alone.
        Assert.All(optimizer.ParamGroups, g => Assert.Equal(0.0, g.LearningRate));
        (encoder.sum() + head.sum()).backward();
        optimizer.step();
        Assert.Equal(3.0, encoder.sum().item<float>());

        scheduler.Apply(1);
        Assert.Equal([0.005, 0.05], optimizer.ParamGroups.Select(g => g.LearningRate));
        optimizer.step();
        Assert.True(encoder.sum().item<float>() < 3.0f);

        scheduler.Apply(4);                                                    // (6 - 4) / 4 = 0.5
        Assert.Equal([0.005, 0.05], optimizer.ParamGroups.Select(g => g.LearningRate));
        scheduler.Apply(2);
        Assert.Equal([0.01, 0.1], optimizer.ParamGroups.Select(g => g.LearningRate));
    }
}
