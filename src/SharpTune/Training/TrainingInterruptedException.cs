namespace SharpTune.Training;

/// <summary>
/// Training stopped on request (a signal) after a complete step, with a checkpoint saved there: <c>--resume</c>
/// continues exactly where it stopped. Every rank of a job throws it after the same step.
/// </summary>
public sealed class TrainingInterruptedException(TrainerState state, string? checkpoint)
    : OperationCanceledException(checkpoint is null
        ? $"training stopped after step {state.GlobalStep} of {state.TotalSteps}; no run folder, so no checkpoint was saved"
        : $"training stopped after step {state.GlobalStep} of {state.TotalSteps}; checkpoint saved in {checkpoint}")
{
    /// <summary>Where the run stood when it stopped (the state the checkpoint holds).</summary>
    public TrainerState State { get; } = state;

    /// <summary>The checkpoint's folder, or null when the trainer had no run folder to save into.</summary>
    public string? Checkpoint { get; } = checkpoint;
}
