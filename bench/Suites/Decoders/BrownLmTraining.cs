using System.Diagnostics;
using SharpTune.Heads;
using SharpTune.Training;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>What one training run of the suite measured.</summary>
/// <param name="Tokens">Tokens in the rows trained on (virtual tokens of prompt methods not counted).</param>
/// <param name="CpuSeconds">Processor time the process spent training (all threads): on a shared machine, the wall
/// clock also counts other programs' turns, this does not.</param>
/// <param name="PeakMemoryBytes">The process's peak resident memory (VmHWM) when training ended.</param>
/// <param name="LoadAverage">The machine's one-minute load average, the mean over the logged steps (2 = both cores busy).</param>
public sealed record LmTrainingMeasure(long Steps, long Tokens, double Seconds, double CpuSeconds, double FirstLoss, double LastLoss,
    long PeakMemoryBytes, double LoadAverage)
{
    /// <summary>The logged steps and the mean training loss since the log before each: how fast the run starts (in a
    /// suite's metrics, not in the base's record).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public IReadOnlyList<(long Step, double Loss)> Curve { get; init; } = [];

    public double SecondsPerStep => Seconds / Math.Max(1, Steps);
    public double TokensPerSecond => Tokens / Math.Max(Seconds, 1e-9);
    public double CpuSecondsPerStep => CpuSeconds / Math.Max(1, Steps);
}

/// <summary>What scoring held-out rows measured: the mean negative log-likelihood per predicted token.</summary>
public sealed record LmEvaluation(double Loss, long Tokens, int Rows, double Seconds)
{
    public double Perplexity => Math.Exp(Loss);
    public double TokensPerSecond => Tokens / Math.Max(Seconds, 1e-9);
}

/// <summary>The suite's training and scoring, through the library's own <see cref="Trainer{TExample}"/> and objective.</summary>
public static class BrownLmTraining
{
    const int EvalBatch = 8;

    public static LmTrainingMeasure Train(CausalLmModel model, IReadOnlyList<CausalLmExample> rows, TrainingOptions options, string label)
    {
        var progress = new Progress(label);
        var trainer = new Trainer<CausalLmExample>(new CausalLmObjective(model, BrownLmData.EndOfText), options, [progress]);
        var process = Process.GetCurrentProcess();
        var cpu = process.TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        var state = trainer.Train(rows, validation: null);
        double seconds = clock.Elapsed.TotalSeconds;
        process.Refresh();
        double cpuSeconds = (process.TotalProcessorTime - cpu).TotalSeconds;
        long tokens = state.GlobalStep * options.BatchSize * (long)rows[0].Length;
        return new LmTrainingMeasure(state.GlobalStep, tokens, seconds, cpuSeconds, progress.FirstLoss, progress.LastLoss,
            FineTuneJob.PeakMemory(), progress.Loads.Count > 0 ? progress.Loads.Average() : LoadAverage()) { Curve = progress.Curve };
    }

    /// <summary>The one-minute load average (Linux), or NaN.</summary>
    public static double LoadAverage()
    {
        try
        {
            return double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return double.NaN;
        }
    }

    public static LmEvaluation Evaluate(CausalLmModel model, IReadOnlyList<CausalLmExample> rows)
    {
        var clock = Stopwatch.StartNew();
        var (loss, tokens) = CausalLmObjective.NegativeLogLikelihood(model, rows, EvalBatch, BrownLmData.EndOfText);
        return new LmEvaluation(loss, tokens, rows.Count, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Prints the loss and speed every logged step.</summary>
    sealed class Progress(string label) : ITrainerCallback
    {
        public double FirstLoss { get; private set; } = double.NaN;
        public double LastLoss { get; private set; } = double.NaN;
        public List<double> Loads { get; } = [];
        public List<(long Step, double Loss)> Curve { get; } = [];

        readonly Process process = Process.GetCurrentProcess();
        TimeSpan cpu = Process.GetCurrentProcess().TotalProcessorTime;
        long lastStep;

        public void OnStep(StepInfo step)
        {
            if (double.IsNaN(FirstLoss)) FirstLoss = step.Loss;
            LastLoss = step.Loss;
            Curve.Add((step.Step, step.Loss));
            process.Refresh();
            double cpuPerStep = (process.TotalProcessorTime - cpu).TotalSeconds / Math.Max(1, step.Step - lastStep);
            (cpu, lastStep) = (process.TotalProcessorTime, step.Step);
            Loads.Add(LoadAverage());
            Console.WriteLine($"  {label} step {step.Step}/{step.TotalSteps}: loss {step.Loss:F3}, lr {step.LearningRate:G3}, " +
                              $"{step.TokensPerSecond:F0} tokens/s, {cpuPerStep:F2} CPU s/step, load {Loads[^1]:F1}");
        }
    }
}
