namespace SharpTune.Training;

/// <summary>How to train: optimizer, schedule, batch size, stopping, evaluation. Validates itself.</summary>
public sealed record TrainingOptions
{
    public int Epochs { get; init; } = 3;
    /// <summary>Stop after this many optimizer steps, overriding <see cref="Epochs"/> when set.</summary>
    public int? MaxSteps { get; init; }
    public int BatchSize { get; init; } = 16;
    public double LearningRate { get; init; } = 5e-5;
    public string Optimizer { get; init; } = "adamw";
    public double WeightDecay { get; init; } = 0.01;
    /// <summary>SGD momentum.</summary>
    public double Momentum { get; init; } = 0.9;
    public string Schedule { get; init; } = "linear";
    /// <summary>Fraction of the total steps spent warming up.</summary>
    public double WarmupRatio { get; init; } = 0.06;
    /// <summary>Clip the global gradient norm to this value; 0 disables clipping.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Micro-batches whose gradients add up before one optimizer step.</summary>
    public int GradientAccumulation { get; init; } = 1;
    public int Seed { get; init; } = 42;
    /// <summary>Evaluate every N optimizer steps (besides every epoch end); null: epoch ends only.</summary>
    public int? EvalEverySteps { get; init; }
    /// <summary>Stop after this many evaluations without improvement; null: never stop early.</summary>
    public int? EarlyStoppingPatience { get; init; }
    /// <summary>The validation metric that picks the best checkpoint and drives early stopping.</summary>
    public string MetricForBest { get; init; } = "auto";
    public int LogEverySteps { get; init; } = 10;
    /// <summary>LoRA+ (Hayou et al. 2024): lora_B and 1-d parameters at <see cref="LearningRate"/> times this; null: one rate.</summary>
    public double? LoraPlusLrRatio { get; init; }

    public TrainingOptions Validate()
    {
        void Require(bool ok, string message) { if (!ok) throw new ArgumentException(message); }
        Require(Epochs >= 1, $"--epochs must be at least 1, got {Epochs}");
        Require(MaxSteps is null or >= 1, $"--max-steps must be at least 1, got {MaxSteps}");
        Require(BatchSize >= 1, $"--batch-size must be at least 1, got {BatchSize}");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), $"--lr must be positive, got {LearningRate}");
        Require(WeightDecay >= 0, $"--weight-decay must be non-negative, got {WeightDecay}");
        Require(Momentum is >= 0 and < 1, $"--momentum must be in [0, 1), got {Momentum}");
        Require(WarmupRatio is >= 0 and <= 1, $"--warmup must be a fraction in [0, 1], got {WarmupRatio}");
        Require(MaxGradNorm >= 0, $"--max-grad-norm must be non-negative, got {MaxGradNorm}");
        Require(GradientAccumulation >= 1, $"--grad-accum must be at least 1, got {GradientAccumulation}");
        Require(EvalEverySteps is null or >= 1, $"--eval-every must be at least 1, got {EvalEverySteps}");
        Require(EarlyStoppingPatience is null or >= 1, $"--patience must be at least 1, got {EarlyStoppingPatience}");
        Require(LogEverySteps >= 1, $"--log-every must be at least 1, got {LogEverySteps}");
        Require(LoraPlusLrRatio is null || LoraPlusLrRatio > 0 && double.IsFinite(LoraPlusLrRatio.Value), $"--loraplus-lr-ratio must be positive, got {LoraPlusLrRatio}");
        Require(OptimizerFactory.Names.Contains(Optimizer.ToLowerInvariant()),
            $"--optimizer '{Optimizer}' is not known: use {string.Join(", ", OptimizerFactory.Names)}");
        return this;
    }
}
