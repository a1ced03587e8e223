using System.Diagnostics;
using SharpTune.Heads;
using SharpTune.Training;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>What one training run of the suite measured.</summary>
/// <param name="Tokens">Tokens in the rows trained on (virtual tokens of prompt methods not counted).</param>
/// <param name="PeakMemoryBytes">The process's peak resident memory (VmHWM) when training ended.</param>
public sealed record LmTrainingMeasure(long Steps, long Tokens, double Seconds, double FirstLoss, double LastLoss, long PeakMemoryBytes)
{
    public double SecondsPerStep => Seconds / Math.Max(1, Steps);
    public double TokensPerSecond => Tokens / Math.Max(Seconds, 1e-9);
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
        var clock = Stopwatch.StartNew();
        var state = trainer.Train(rows, validation: null);
        double seconds = clock.Elapsed.TotalSeconds;
        long tokens = state.GlobalStep * options.BatchSize * (long)rows[0].Length;
        return new LmTrainingMeasure(state.GlobalStep, tokens, seconds, progress.FirstLoss, progress.LastLoss, SharpTune.Training.FineTuneJob.PeakMemory());
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

        public void OnStep(StepInfo step)
        {
            if (double.IsNaN(FirstLoss)) FirstLoss = step.Loss;
            LastLoss = step.Loss;
            Console.WriteLine($"  {label} step {step.Step}/{step.TotalSteps}: loss {step.Loss:F3}, lr {step.LearningRate:G3}, {step.TokensPerSecond:F0} tokens/s");
        }
    }
}
