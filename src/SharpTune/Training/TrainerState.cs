using System.Text.Json.Serialization;

namespace SharpTune.Training;

/// <summary>Where a run stands: saved with every checkpoint so <c>--resume</c> continues exactly there.</summary>
public sealed record TrainerState
{
    /// <summary>Optimizer steps taken.</summary>
    [JsonPropertyName("global_step")] public long GlobalStep { get; init; }
    /// <summary>Micro-batches consumed (equals steps without gradient accumulation); seeds dropout.</summary>
    [JsonPropertyName("micro_step")] public long MicroStep { get; init; }
    [JsonPropertyName("epoch")] public int Epoch { get; init; }
    /// <summary>Batches of <see cref="Epoch"/> already consumed: the position in the data.</summary>
    [JsonPropertyName("batch_in_epoch")] public int BatchInEpoch { get; init; }
    [JsonPropertyName("best_metric")] public double? BestMetric { get; init; }
    [JsonPropertyName("best_step")] public long? BestStep { get; init; }
    [JsonPropertyName("evaluations_without_improvement")] public int EvaluationsWithoutImprovement { get; init; }
    [JsonPropertyName("total_steps")] public long TotalSteps { get; init; }
    /// <summary>Processes of the data-parallel job that wrote the state; a checkpoint resumes only with as many.</summary>
    [JsonPropertyName("world_size")] public int WorldSize { get; init; } = 1;
    /// <summary>
    /// Training loss summed over the micro-batches since the last logged step, and their count: a run resumed between two
    /// log lines logs the same mean as the run that was not stopped.
    /// </summary>
    [JsonPropertyName("loss_since_log")] public double LossSinceLog { get; init; }
    [JsonPropertyName("micro_steps_since_log")] public int MicroStepsSinceLog { get; init; }
}

/// <summary>What one optimizer step did.</summary>
public sealed record StepInfo(long Step, long TotalSteps, int Epoch, double Loss, double LearningRate, double ExamplesPerSecond, double TokensPerSecond, TimeSpan Elapsed);

/// <summary>One evaluation on the validation data.</summary>
public sealed record EvaluationInfo(long Step, int Epoch, double Loss, IReadOnlyDictionary<string, double> Metrics, bool IsBest, string Trigger);

/// <summary>
/// The trainer's only extension point: told about steps, evaluations, new best models and checkpoints.
/// Every method has a default so a callback implements just what it needs.
/// </summary>
public interface ITrainerCallback
{
    void OnTrainBegin(TrainerState state, TorchSharp.torch.nn.Module model) { }
    void OnStep(StepInfo step) { }
    void OnEvaluate(EvaluationInfo evaluation) { }
    void OnNewBest(TorchSharp.torch.nn.Module model, EvaluationInfo evaluation) { }
    void OnCheckpoint(TrainerState state) { }
    void OnTrainEnd(TrainerState state) { }
}
