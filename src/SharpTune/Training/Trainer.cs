using System.Diagnostics;
using SharpTune.Checkpoints;
using SharpTune.Distributed;
using SharpTune.Heads;
using SharpTune.Metrics;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// Fine-tunes a <see cref="TaskModel"/>. One loop, readable top to bottom: forward, loss, backward, clip,
/// step, schedule, zero-grad; evaluation every N steps and at each epoch end; the best model reported to
/// the callbacks; early stopping; and a resumable checkpoint at every evaluation.
/// </summary>
public sealed class Trainer
{
    readonly TaskModel model;
    readonly TrainingOptions options;
    readonly long padId;
    readonly Func<IReadOnlyList<EncodedExample>, Prediction[], IReadOnlyDictionary<string, double>> metrics;
    readonly IReadOnlyList<ITrainerCallback> callbacks;

    /// <param name="metrics">Computes validation metrics from predictions (by the data set's order).</param>
    public Trainer(TaskModel model, TrainingOptions options, long padId,
        Func<IReadOnlyList<EncodedExample>, Prediction[], IReadOnlyDictionary<string, double>> metrics,
        IReadOnlyList<ITrainerCallback>? callbacks = null)
    {
        this.model = model;
        this.options = options.Validate();
        this.padId = padId;
        this.metrics = metrics;
        this.callbacks = callbacks ?? [];
    }

    /// <summary>Optimizer steps the run will take for <paramref name="trainCount"/> examples.</summary>
    public long TotalSteps(int trainCount)
    {
        long globalBatch = options.BatchSize * World.Current.Size;
        long batches = (trainCount + globalBatch - 1) / globalBatch;
        long perEpoch = (batches + options.GradientAccumulation - 1) / options.GradientAccumulation;
        return options.MaxSteps ?? perEpoch * options.Epochs;
    }

    /// <summary>Trains; with <paramref name="checkpoints"/> it saves at every evaluation and, with <paramref name="resume"/>, continues from the latest one.</summary>
    public TrainerState Train(IReadOnlyList<EncodedExample> train, IReadOnlyList<EncodedExample>? validation,
        TrainingCheckpoint? checkpoints = null, bool resume = false, CancellationToken cancel = default)
    {
        if (train.Count == 0) throw new ArgumentException("The training data is empty.");
        long totalSteps = TotalSteps(train.Count);
        long warmup = (long)Math.Round(options.WarmupRatio * totalSteps);
        var optimizer = OptimizerFactory.Create(options.Optimizer, model, options.LearningRate, options.WeightDecay, options.Momentum);
        var scheduler = new LearningRateScheduler(optimizer, LearningRateSchedule.Parse(options.Schedule, warmup, totalSteps));
        var trainable = model.parameters().Where(p => p.requires_grad).ToList();
        using var parallel = new DataParallel(World.Current, model.Head, trainable);
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
        double lossSinceLog = 0;
        int microSinceStep = 0, microSinceLog = 0;
        bool stop = false;

        for (int epoch = state.Epoch; epoch < int.MaxValue && !stop && state.GlobalStep < totalSteps; epoch++)
        {
            var batches = Batcher.TrainingBatches(train, parallel.GlobalBatch(options.BatchSize), options.Seed, epoch);
            for (int b = epoch == state.Epoch ? state.BatchInEpoch : 0; b < batches.Count && !stop; b++)
            {
                cancel.ThrowIfCancellationRequested();
                // Dropout draws from a generator seeded by the micro-step, so a resumed run sees the same masks.
                manual_seed(parallel.DropoutSeed(options.Seed, state.MicroStep));
                double loss = 0;
                var shard = parallel.Shard(batches[b]);   // this process's part of the global batch
                if (shard.Length > 0)
                {
                    using var scope = NewDisposeScope();
                    var batch = shard.Select(i => train[i]).ToList();
                    var (inputs, labels) = Collator.Collate(batch, model.Head, padId);
                    var logits = model.forward(inputs);
                    var value = model.Loss(logits, labels, inputs);
                    double share = parallel.LossShare(train, batches[b], shard);
                    (value * share / options.GradientAccumulation).backward();
                    loss = value.item<float>() * share;
                }
                loss = parallel.Sum(loss);   // the global batch's mean loss
                examplesSinceLog += batches[b].Length;
                tokensSinceLog += batches[b].Sum(i => train[i].Length);
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
                if (state.GlobalStep % options.LogEverySteps == 0 || last || epochEnds)
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
                if (!evalDue) continue;
                if (validation is { Count: > 0 })
                {
                    (state, stop) = Evaluate(state, validation, epochEnds ? "epoch" : last ? "end" : "steps", parallel.World, callbacks);
                    model.train();
                }
                if (checkpoints is not null && parallel.World.IsMain)
                {
                    checkpoints.Save(model, optimizer, state);
                    foreach (var c in callbacks) c.OnCheckpoint(state);
                }
                stop |= last;
                clock.Restart();
            }
        }
        foreach (var c in callbacks) c.OnTrainEnd(state);
        return state;
    }

    (TrainerState, bool Stop) Evaluate(TrainerState state, IReadOnlyList<EncodedExample> validation, string trigger,
        ICommunicator world, IReadOnlyList<ITrainerCallback> callbacks)
    {
        var output = DataParallel.Evaluate(world, model, validation, Math.Max(options.BatchSize, 32), padId);
        var values = new Dictionary<string, double>(metrics(validation, output.Predictions)) { ["loss"] = output.Loss };
        string key = MetricForBest(values);
        double current = values[key];
        bool improved = state.BestMetric is not { } best || MetricCatalog.Improves(key, current, best);
        state = improved
            ? state with { BestMetric = current, BestStep = state.GlobalStep, EvaluationsWithoutImprovement = 0 }
            : state with { EvaluationsWithoutImprovement = state.EvaluationsWithoutImprovement + 1 };
        var info = new EvaluationInfo(state.GlobalStep, state.Epoch, output.Loss, values, improved, trigger);
        foreach (var c in callbacks) c.OnEvaluate(info);
        if (improved) foreach (var c in callbacks) c.OnNewBest(model, info);
        bool stop = options.EarlyStoppingPatience is { } patience && state.EvaluationsWithoutImprovement >= patience;
        return (state, stop);
    }

    string MetricForBest(IReadOnlyDictionary<string, double> values)
    {
        if (options.MetricForBest != "auto")
        {
            if (!values.ContainsKey(options.MetricForBest))
                throw new ArgumentException($"--metric '{options.MetricForBest}' is not computed for this task; available: {string.Join(", ", values.Keys)}");
            return options.MetricForBest;
        }
        foreach (string preferred in new[] { "macro_f1", "entity_f1", "token_accuracy", "pearson", "loss" })
            if (values.ContainsKey(preferred)) return preferred;
        return "loss";
    }
}
