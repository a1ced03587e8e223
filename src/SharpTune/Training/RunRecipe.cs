using SharpTune.Data;
using SharpTune.Distributed;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// One kind of run (a task head on an encoder, a language model on text, ...) as <see cref="FineTuneJob"/> runs it. The
/// job does what every run does, in one order; a recipe says what this kind does differently: which options it takes,
/// how the model is built, how the data is read, the objective, and what is saved. Registered per task in
/// <see cref="Tasks.TaskRegistry"/>.
/// </summary>
public interface IRunRecipe : IDisposable
{
    /// <summary>Runs the recipe in <paramref name="job"/> (the job is generic in the recipe's example type).</summary>
    RunSummary RunIn(FineTuneJob job, CancellationToken cancel);
}

/// <summary>
/// A recipe over examples of type <typeparamref name="TExample"/>. <see cref="Prepare"/> does every check that needs the
/// model before a long step, loads it with the method built in, and reads and encodes the data; the job then takes the
/// run through training, evaluation and saving, calling back for what only the recipe knows.
/// </summary>
public abstract class RunRecipe<TExample>(FineTuneOptions options) : IRunRecipe
{
    protected FineTuneOptions Options { get; } = options;

    /// <summary>The model, its objective and the data, ready to train.</summary>
    public abstract RunPlan<TExample> Prepare(RunContext run);

    /// <summary>Writes the trained model into <paramref name="folder"/> (the run's <c>best/</c> and <c>final/</c>).</summary>
    public abstract void SaveModel(string folder);

    /// <summary>Files beside run_config.json that describe the run (the label set); rank 0 only.</summary>
    public virtual void WriteRunFiles(string run) { }

    /// <summary>Callbacks of this kind of run besides the log and the best-model saver (generated samples).</summary>
    public virtual IEnumerable<ITrainerCallback> Callbacks(string run) => [];

    /// <summary>What the run says and writes after its final validation metrics (reports, samples); every rank calls it.</summary>
    public virtual void ReportFinal(RunContext run, IReadOnlyDictionary<string, double> metrics, TrainerState state) { }

    /// <summary>The validation metric curves.png plots beside the losses; null: the objective's <see cref="ITrainingObjective{TExample}.Metric"/>.</summary>
    public virtual string? CurveMetric => null;

    /// <summary>The saved model's adapter folder, whose size the summary reports, or null when the whole model trains.</summary>
    public virtual string? AdapterFolder => null;

    public RunSummary RunIn(FineTuneJob job, CancellationToken cancel) => job.Run(this, cancel);

    public virtual void Dispose() => GC.SuppressFinalize(this);
}

/// <summary>What a recipe prepared: the model and objective, the data, and what the run folder records of them.</summary>
/// <param name="Train">Training rows as the trainer takes them (packed rows, for packing).</param>
/// <param name="TrainExamples">Training examples before packing, for the summary.</param>
/// <param name="Resolved">The options as the run uses them (the max length and pooling the model decided): run_config.json.</param>
public sealed record RunPlan<TExample>(
    ITrainingObjective<TExample> Objective, ParameterSummary Parameters,
    IReadOnlyList<TExample> Train, IReadOnlyList<TExample> Validation, int TrainExamples, int Truncated,
    IReadOnlyList<string> Skipped, FineTuneOptions Resolved)
{
    /// <summary>What every process of a data-parallel job must agree on besides the options and files (the label set).</summary>
    public IReadOnlyDictionary<string, string> SameRunFacts { get; init; } = new Dictionary<string, string>();
}

/// <summary>What a recipe gets from the job: where the run goes, who it is in a data-parallel job, and the rules every run shares.</summary>
public sealed class RunContext(FineTuneOptions options, string folder, ICommunicator world, Action<string> say)
{
    /// <summary>The run folder (absolute).</summary>
    public string Folder { get; } = folder;

    public ICommunicator World { get; } = world;

    public Action<string> Say { get; } = say;

    /// <summary>Where skipped rows are listed.</summary>
    public string SkippedRowsFile => Path.Combine(Folder, "skipped_rows.txt");

    /// <summary>Lists the rows skipped as malformed or with nothing to learn (rank 0 writes), so none is lost silently.</summary>
    public void ListSkipped(IReadOnlyList<string> skipped)
    {
        if (skipped.Count == 0 || !World.IsMain) return;
        Directory.CreateDirectory(Folder);
        Checkpoints.AtomicFile.WriteAllText(SkippedRowsFile, string.Join("\n", skipped) + "\n");
    }

    /// <summary>
    /// Every draw of a run comes from generators seeded here or from <c>--seed</c>, never from what the process happened to
    /// draw before: recipes reseed before each part that draws (a model's construction, a head, prompt encoders, adapters).
    /// </summary>
    public void Seed() => manual_seed(options.Training.Seed);

    /// <summary>
    /// Tokens per example: <c>--max-length</c>, within the <paramref name="modelPositions"/> the model reads less the
    /// <paramref name="promptPositions"/> a prompt method's virtual tokens take. A default longer than that follows the
    /// model (said); a given one is refused.
    /// </summary>
    public int MaxLength(int modelPositions, int promptPositions)
    {
        int available = modelPositions - promptPositions;
        if (options.MaxLength <= available) return options.MaxLength;
        bool given = options.Sources.GetValueOrDefault("max-length", "default") != "default";
        string need = promptPositions == 0
            ? $"{options.Model} has {modelPositions} positions"
            : $"the {promptPositions} virtual tokens of --method {options.Method} (--virtual-tokens) take {promptPositions} of {options.Model}'s {modelPositions} positions";
        if (given || available < 4)
            throw new ArgumentException($"--max-length {options.MaxLength} is longer than the model can read: {need}, leaving {Math.Max(0, available)} for text");
        Say($"max length {available} tokens: {need}");
        return available;
    }

    /// <summary>
    /// The training and validation rows: the <c>--validation</c> file, or a seeded held-out part of <c>--train</c> (stratified
    /// by <paramref name="stratifyBy"/> when given). Rows skipped as malformed are listed, never lost.
    /// </summary>
    /// <param name="noun">What a row is, for the message (examples, sentences, rows).</param>
    public (IReadOnlyList<T> Train, IReadOnlyList<T> Validation, List<string> Skipped) ReadSplit<T>(
        Func<string, DataSet<T>> read, string noun, Func<T, string?>? stratifyBy = null, int minimumToSplit = 1)
    {
        var train = read(options.Train!);
        var skipped = train.SkippedRows.ToList();
        if (options.Validation is { } path)
        {
            var validation = read(path);
            skipped.AddRange(validation.SkippedRows);
            return (train.Examples, validation.Examples, skipped);
        }
        if (train.Examples.Count < minimumToSplit) return (train.Examples, [], skipped);
        var split = DataSplit.TrainValidation(train.Examples, options.ValidationFraction, options.Training.Seed, stratifyBy);
        Say($"no --validation file: holding out {split.Validation.Count} of {train.Examples.Count} training {noun} (seed {options.Training.Seed})");
        return (split.Train, split.Validation, skipped);
    }
}
