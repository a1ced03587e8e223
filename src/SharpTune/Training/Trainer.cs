using System.Diagnostics;
using SharpTune.Checkpoints;
using SharpTune.Data;
using SharpTune.Distributed;
using SharpTune.Heads;
using SharpTune.Metrics;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// What a <see cref="Trainer{TExample}"/> trains: the model, how a batch of examples becomes its loss, and how the
/// validation data is scored. One per kind of task (a classification or tagging head, a language model).
/// </summary>
public interface ITrainingObjective<TExample>
{
    /// <summary>The whole model: the optimizer takes its trainable parameters, checkpoints its state.</summary>
    nn.Module Model { get; }

    /// <summary>Tokens in an example: batches group examples of similar length, and throughput counts them.</summary>
    int Length(TExample example);

    /// <summary>The mean loss of a batch, in training mode, with its graph (the trainer backpropagates it).</summary>
    Tensor Loss(IReadOnlyList<TExample> batch);

    /// <summary>
    /// This example's part of the denominator of the batch's mean loss (1 for a mean over examples, its target tokens for
    /// a mean over tokens): several processes weight their shards' losses by it, so their sum is the global batch's mean.
    /// </summary>
    double LossWeight(TExample example) => 1;

    /// <summary>
    /// The validation metric that chooses the best model when <c>--metric</c> is auto (the task's headline figure:
    /// macro F1, entity F1, Pearson's r; the loss for a language model).
    /// </summary>
    string Metric => "loss";

    /// <summary>
    /// Validation metrics, <c>loss</c> among them, computed in eval mode with no gradients. In a job of several
    /// processes each evaluates a shard and the results are combined: every rank returns the same values.
    /// </summary>
    IReadOnlyDictionary<string, double> Evaluate(IReadOnlyList<TExample> validation, int batchSize, ICommunicator world);
}

/// <summary>
/// Fine-tunes a model. One loop, readable top to bottom: forward, loss, backward, clip, step, schedule,
/// zero-grad; evaluation every N steps and at each epoch end; the best model reported to the callbacks;
/// early stopping; and a resumable checkpoint at every evaluation and when interrupted.
/// </summary>
public class Trainer<TExample>
{
    readonly ITrainingObjective<TExample> objective;
    readonly nn.Module model;
    readonly TrainingOptions options;
    readonly IReadOnlyList<ITrainerCallback> callbacks;

    public Trainer(ITrainingObjective<TExample> objective, TrainingOptions options, IReadOnlyList<ITrainerCallback>? callbacks = null)
    {
        this.objective = objective;
        model = objective.Model;
        this.options = options.Validate();
        this.callbacks = callbacks ?? [];
    }

    /// <summary>Optimizer steps the run will take for <paramref name="trainCount"/> examples (the batch is per process).</summary>
    public long TotalSteps(int trainCount)
    {
        long globalBatch = options.BatchSize * World.Current.Size;
        long batches = (trainCount + globalBatch - 1) / globalBatch;
        long perEpoch = (batches + options.GradientAccumulation - 1) / options.GradientAccumulation;
        return options.MaxSteps ?? perEpoch * options.Epochs;
    }

    /// <summary>
    /// Trains; with <paramref name="checkpoints"/> it saves at every evaluation and, with <paramref name="resume"/>, continues
    /// from the latest one. Once <paramref name="interrupt"/> is cancelled (by a signal, on any rank of a job) the step under
    /// way finishes, a checkpoint is saved and <see cref="TrainingInterruptedException"/> is thrown; a resume from there ends
    /// as the uninterrupted run would.
    /// </summary>
    public TrainerState Train(IReadOnlyList<TExample> train, IReadOnlyList<TExample>? validation,
        TrainingCheckpoint? checkpoints = null, bool resume = false, CancellationToken interrupt = default)
    {
        if (train.Count == 0) throw new ArgumentException("The training data is empty.");
        long totalSteps = TotalSteps(train.Count);
        long warmup = (long)Math.Round(options.WarmupRatio * totalSteps);
        var optimizer = OptimizerFactory.Create(options.Optimizer, model, options.LearningRate, options.WeightDecay, options.Momentum);
        var scheduler = new LearningRateScheduler(optimizer, LearningRateSchedule.Parse(options.Schedule, warmup, totalSteps));
        var named = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        var trainable = named.Select(p => p.parameter).ToList();
        var lengths = train.Select(objective.Length).ToArray();
        using var parallel = new DataParallel(World.Current, named.Select(p => (p.name, (Tensor)p.parameter)).ToList());
        var callbacks = parallel.World.IsMain ? this.callbacks : [];   // rank 0 alone logs and writes
        var state = new TrainerState { TotalSteps = totalSteps, WorldSize = parallel.World.Size };
        if (resume)
        {
            string latest = checkpoints?.Latest() ?? throw new InvalidDataException(
                $"--resume: no checkpoint to resume from in {checkpoints?.Directory ?? "(no run folder)"}");
            state = TrainingCheckpoint.Load(latest, model, optimizer);
            parallel.CheckResumable(latest, state);
            if (state.TotalSteps != totalSteps)
                throw new InvalidDataException($"{latest}: the checkpoint was written for {state.TotalSteps} steps, these options give {totalSteps}; resume with the same data and options");
        }
        foreach (var c in callbacks) c.OnTrainBegin(state, model);

        model.train();
        optimizer.zero_grad();
        var clock = Stopwatch.StartNew();
        long examplesSinceLog = 0, tokensSinceLog = 0;
        double lossSinceLog = state.LossSinceLog;
        int microSinceStep = 0, microSinceLog = state.MicroStepsSinceLog;
        bool stop = false;

        for (int epoch = state.Epoch; epoch < int.MaxValue && !stop && state.GlobalStep < totalSteps; epoch++)
        {
            var batches = Batcher.TrainingBatches(lengths, parallel.GlobalBatch(options.BatchSize), options.Seed, epoch);
            for (int b = epoch == state.Epoch ? state.BatchInEpoch : 0; b < batches.Count && !stop; b++)
            {
                // Dropout draws from a generator seeded by the micro-step, so a resumed run sees the same masks.
                manual_seed(parallel.DropoutSeed(options.Seed, state.MicroStep));
                double loss = 0;
                var shard = parallel.Shard(batches[b]);   // this process's part of the global batch
                if (shard.Length > 0)
                {
                    using var scope = NewDisposeScope();
                    var batch = shard.Select(i => train[i]).ToList();
                    var value = objective.Loss(batch);
                    double share = parallel.LossShare(batches[b], shard, i => objective.LossWeight(train[i]));
                    // The last micro-step of a step reduces the gradients while backward runs (data parallel).
                    bool endsStep = microSinceStep + 1 >= options.GradientAccumulation || b == batches.Count - 1;
                    parallel.Backward(value * share / options.GradientAccumulation, endsStep);
                    loss = value.item<float>() * share;
                }
                loss = parallel.Sum(loss);   // the global batch's mean loss
                examplesSinceLog += batches[b].Length;
                tokensSinceLog += batches[b].Sum(i => lengths[i]);
                if (!double.IsFinite(loss))
                    throw new InvalidOperationException($"Loss became {loss} at step {state.GlobalStep + 1}; lower --lr or check the labels.");
                lossSinceLog += loss;
                microSinceLog++;
                microSinceStep++;
                state = state with { MicroStep = state.MicroStep + 1, Epoch = epoch, BatchInEpoch = b + 1 };

                bool epochEnds = b == batches.Count - 1;
                if (microSinceStep < options.GradientAccumulation && !epochEnds) continue;

                double learningRate;
                using (var stepScope = NewDisposeScope()) // clipping and the optimizer make temporaries too
                {
                    parallel.ReduceGradients();
                    if (options.MaxGradNorm > 0) nn.utils.clip_grad_norm_(trainable, options.MaxGradNorm);
                    scheduler.Apply(state.GlobalStep);
                    learningRate = optimizer.ParamGroups.First().LearningRate;
                    optimizer.step();
                    optimizer.zero_grad();
                }
                microSinceStep = 0;
                state = state with { GlobalStep = state.GlobalStep + 1 };
                if (epochEnds) state = state with { Epoch = epoch + 1, BatchInEpoch = 0 };

                bool last = state.GlobalStep >= totalSteps;
                bool interrupted = parallel.AnyRank(interrupt.IsCancellationRequested);   // every rank stops after the same step
                if (state.GlobalStep % options.LogEverySteps == 0 || last || epochEnds || interrupted)
                {
                    double seconds = Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
                    var info = new StepInfo(state.GlobalStep, totalSteps, epoch, lossSinceLog / microSinceLog, learningRate,
                        examplesSinceLog / seconds, tokensSinceLog / seconds, clock.Elapsed);
                    foreach (var c in callbacks) c.OnStep(info);
                    lossSinceLog = 0;
                    microSinceLog = 0;
                    examplesSinceLog = tokensSinceLog = 0;
                    clock.Restart();
                }

                bool evalDue = epochEnds || last || (options.EvalEverySteps is { } every && state.GlobalStep % every == 0);
                if (!evalDue && !interrupted) continue;
                if (evalDue && validation is { Count: > 0 })
                {
                    (state, stop) = Evaluate(state, validation, epochEnds ? "epoch" : last ? "end" : "steps", parallel.World, callbacks);
                    model.train();
                }
                if (checkpoints is not null && parallel.World.IsMain)
                {
                    state = state with { LossSinceLog = lossSinceLog, MicroStepsSinceLog = microSinceLog };
                    checkpoints.Save(model, optimizer, state);
                    foreach (var c in callbacks) c.OnCheckpoint(state);
                }
                stop |= last;
                if (interrupted && !stop) throw new TrainingInterruptedException(state, checkpoints?.FolderOf(state));   // a run that ends here ends as usual
                clock.Restart();
            }
        }
        foreach (var c in callbacks) c.OnTrainEnd(state);
        return state;
    }

    (TrainerState, bool Stop) Evaluate(TrainerState state, IReadOnlyList<TExample> validation, string trigger,
        ICommunicator world, IReadOnlyList<ITrainerCallback> callbacks)
    {
        var values = objective.Evaluate(validation, EvaluationBatchSize(options), world);
        string key = MetricForBest(values);
        double current = values[key];
        bool improved = state.BestMetric is not { } best || MetricCatalog.Improves(key, current, best);
        state = improved
            ? state with { BestMetric = current, BestStep = state.GlobalStep, EvaluationsWithoutImprovement = 0 }
            : state with { EvaluationsWithoutImprovement = state.EvaluationsWithoutImprovement + 1 };
        var info = new EvaluationInfo(state.GlobalStep, state.Epoch, values["loss"], values, improved, trigger);
        foreach (var c in callbacks) c.OnEvaluate(info);
        if (improved) foreach (var c in callbacks) c.OnNewBest(model, info);
        bool stop = options.EarlyStoppingPatience is { } patience && state.EvaluationsWithoutImprovement >= patience;
        return (state, stop);
    }

    string MetricForBest(IReadOnlyDictionary<string, double> values)
    {
        string chosen = options.MetricForBest == "auto" ? objective.Metric : options.MetricForBest;
        if (values.ContainsKey(chosen)) return chosen;
        if (options.MetricForBest == "auto") return "loss";
        throw new ArgumentException($"--metric '{options.MetricForBest}' is not computed for this task; available: {string.Join(", ", values.Keys)}");
    }

    /// <summary>Examples per forward pass in evaluation: no gradients are kept, so at least 32.</summary>
    public static int EvaluationBatchSize(TrainingOptions options) => Math.Max(options.BatchSize, 32);
}

/// <summary>Fine-tunes a <see cref="TaskModel"/> on encoded examples (classification, regression, tagging).</summary>
public sealed class Trainer : Trainer<EncodedExample>
{
    /// <param name="metrics">Computes validation metrics from predictions (by the data set's order).</param>
    public Trainer(TaskModel model, TrainingOptions options, long padId,
        Func<IReadOnlyList<EncodedExample>, Prediction[], IReadOnlyDictionary<string, double>> metrics,
        IReadOnlyList<ITrainerCallback>? callbacks = null)
        : base(new TaskObjective(model, padId, metrics), options, callbacks) { }
}

/// <summary>
/// A task head's objective: collate, forward, the head's loss, weighted as the head averages it; validation scored by
/// the head's metrics over the label set (the last full report kept for the run's eval_final.json), or by a given function.
/// </summary>
public sealed class TaskObjective : ITrainingObjective<EncodedExample>
{
    readonly TaskModel model;
    readonly long padId;
    readonly LabelMap? labels;
    readonly Func<IReadOnlyList<EncodedExample>, Prediction[], IReadOnlyDictionary<string, double>>? metrics;

    public TaskObjective(TaskModel model, long padId, LabelMap? labels) => (this.model, this.padId, this.labels) = (model, padId, labels);

    public TaskObjective(TaskModel model, long padId, Func<IReadOnlyList<EncodedExample>, Prediction[], IReadOnlyDictionary<string, double>> metrics)
        => (this.model, this.padId, this.metrics) = (model, padId, metrics);

    /// <summary>The report (per class, confusion matrix) of the last evaluation scored by the head.</summary>
    public IMetricReport? LastReport { get; private set; }

    public nn.Module Model => model;

    public string Metric => model.TaskHead.PrimaryMetric(labels?.Labels);

    public double LossWeight(EncodedExample example) => model.TaskHead.LossWeight(example);

    public int Length(EncodedExample example) => example.Length;

    public Tensor Loss(IReadOnlyList<EncodedExample> batch)
    {
        var (inputs, targets) = Collator.Collate(batch, model.Head, padId);
        return model.Loss(model.forward(inputs), targets, inputs);
    }

    public IReadOnlyDictionary<string, double> Evaluate(IReadOnlyList<EncodedExample> validation, int batchSize, ICommunicator world)
    {
        var output = DataParallel.Evaluate(world, model, validation, batchSize, padId);
        IReadOnlyDictionary<string, double> values;
        if (metrics is not null) values = metrics(validation, output.Predictions);
        else (values, LastReport) = model.TaskHead.Score(validation, output.Predictions, labels?.Labels);
        return new Dictionary<string, double>(values) { ["loss"] = output.Loss };
    }
}
