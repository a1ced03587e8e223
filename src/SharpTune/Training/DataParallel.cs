using System.Diagnostics;
using SharpTune.Distributed;
using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// What the training loop does differently when several processes train one model (torchrun's and Horovod's
/// semantics): every rank draws the same global batches of <c>--batch-size</c> x ranks examples and takes its
/// shard of each; its loss is weighted by its share of the global batch's loss denominator, so that the sum of
/// the ranks' gradients is the gradient of the mean over the global batch, as one process with the global batch
/// computes it; gradients are summed over the ranks before clipping. In a job of one process each of these is
/// the identity, so the loop has no branch for it.
/// </summary>
public sealed class DataParallel : IDisposable
{
    /// <summary>Fault injection for the tests: the rank named here throws at its first gradient reduction.</summary>
    public const string FailRankVariable = "SHARPTUNE_FAULT_FAIL_RANK";

    readonly ICommunicator world;
    readonly GradientAllReduce gradients;
    readonly StepCollectives timings = new();
    readonly bool failHere;

    /// <param name="trainable">The trainable parameters with their names, in the model's order.</param>
    public DataParallel(ICommunicator world, IReadOnlyList<(string Name, Tensor Parameter)> trainable)
    {
        this.world = world;
        var (order, stackEnd) = BucketOrder(trainable.Select(p => p.Name).ToList());
        gradients = new GradientAllReduce(world, trainable.Select(p => p.Parameter).ToList(), order: order, groupEnds: new HashSet<int> { stackEnd });
        failHere = world.Size > 1 && Environment.GetEnvironmentVariable(FailRankVariable) == world.Rank.ToString();
    }

    public ICommunicator World => world;

    /// <summary>This rank's time per step: the whole step, the loss exchange, the gradients' sum.</summary>
    public StepCollectives Timings => timings;

    /// <summary>Examples per optimizer micro-step over all ranks.</summary>
    public int GlobalBatch(int perRank) => perRank * world.Size;

    /// <summary>
    /// This rank's examples of one global batch: every Size-th from its rank on. The global batch comes from a
    /// length-sorted pool, so striding gives every rank texts of about the same lengths and the ranks finish
    /// together.
    /// </summary>
    public int[] Shard(int[] global) =>
        world.Size == 1 ? global : global.Where((_, j) => j % world.Size == world.Rank).ToArray();

    /// <summary>
    /// Dropout's seed for a micro-step, distinct per rank (rank r of n continues the single-process sequence at
    /// micro-step x n + r), so ranks draw independent masks and a resumed run draws the same ones.
    /// </summary>
    public long DropoutSeed(int seed, long microStep) => seed * 1_000_003L + microStep * world.Size + world.Rank;

    /// <summary>
    /// The factor on this rank's mean loss so that the ranks' weighted losses add up to the global batch's mean
    /// loss: this shard's part of the denominator of the loss's mean (<paramref name="weight"/> per example: 1, its
    /// labelled words or target tokens, its class weight), over the global batch's.
    /// </summary>
    public double LossShare(int[] global, int[] shard, Func<int, double> weight)
    {
        if (world.Size == 1) return 1;
        double all = global.Sum(weight), mine = shard.Sum(weight);
        return all > 0 ? mine / all : 0;
    }

    /// <summary>The sum over ranks of a value (the weighted losses: the global batch's mean loss).</summary>
    public double Sum(double value)
    {
        if (world.Size == 1) return value;
        long start = Stopwatch.GetTimestamp();
        Span<double> one = [value];
        world.AllReduceSum(one);
        timings.AddExchange(start);
        return one[0];
    }

    /// <summary>
    /// The order in which gradients are bucketed: the parameters of the layer stack (<c>encoder.layer.N</c>,
    /// <c>model.layers.N</c>, <c>transformer.h.N</c>) in reverse, as backward completes them layer by layer, then the
    /// rest in reverse (heads, pooler, embeddings: complete only when backward ends). The stack's buckets can start
    /// their sums during backward; <paramref name="names"/> are the same on every rank, so the buckets are too.
    /// </summary>
    public static (List<int> Order, int StackEnd) BucketOrder(IReadOnlyList<string> names)
    {
        var stack = Enumerable.Range(0, names.Count).Where(i => LayerStack.IsMatch(names[i])).Reverse().ToList();
        var rest = Enumerable.Range(0, names.Count).Where(i => !LayerStack.IsMatch(names[i])).Reverse();
        return ([.. stack, .. rest], stack.Count);
    }

    static readonly System.Text.RegularExpressions.Regex LayerStack = new(@"(^|\.)(layer|layers|h)\.\d+\.");

    /// <summary>
    /// Backward from <paramref name="loss"/>. On the last micro-step of an optimizer step (<paramref name="endsStep"/>)
    /// the gradients' sums start while backward runs, bucket by bucket as layers finish.
    /// </summary>
    public void Backward(Tensor loss, bool endsStep) => gradients.Backward(loss, endsStep);

    /// <summary>Gradients become their sum over the ranks: call after the last backward of a step, before clipping.</summary>
    public void ReduceGradients()
    {
        if (failHere) throw new InvalidOperationException($"injected failure on rank {world.Rank} ({FailRankVariable})");
        long start = Stopwatch.GetTimestamp();
        gradients.SumOverRanks();
        timings.EndStep(start, gradients.InBackward.TotalSeconds, gradients.StartedDuringBackward, gradients.BucketCount);
    }

    /// <summary>
    /// True on every rank when <paramref name="mine"/> is true on any rank: a signal may reach one rank only, or the ranks
    /// in different steps, and they must still stop after the same step (a rank that stopped alone would leave the others
    /// waiting in a collective).
    /// </summary>
    public bool AnyRank(bool mine)
    {
        if (world.Size == 1) return mine;
        Span<double> flag = [mine ? 1 : 0];
        world.AllReduceMax(flag);
        return flag[0] > 0;
    }

    /// <summary>Refuses a checkpoint written by a job of another size: the global batch and the shards follow it.</summary>
    public void CheckResumable(string checkpoint, TrainerState state)
    {
        if (state.WorldSize != world.Size)
            throw new InvalidDataException($"{checkpoint}: the run was trained by {state.WorldSize} process(es) and can only be resumed by as many " +
                $"(this job has {world.Size}): the global batch, the shards and the data order follow the number of processes");
        var steps = DataParallelJob.Gather(world, state.GlobalStep.ToString());
        if (steps.Distinct().Count() > 1)
            throw new InvalidDataException($"--resume: the ranks found different checkpoints (steps {string.Join(", ", steps)} on ranks 0..{world.Size - 1}); " +
                "the run folder must be one folder all machines share");
    }

    /// <summary>Loss and predictions over <paramref name="data"/>, each rank running every Size-th example; the same result on every rank.</summary>
    public static EvaluationOutput Evaluate(ICommunicator world, TaskModel model, IReadOnlyList<EncodedExample> data, int batchSize, long padId)
    {
        if (world.Size == 1) return Evaluator.Run(model, data, batchSize, padId);
        var mine = Enumerable.Range(0, data.Count).Where(i => i % world.Size == world.Rank).ToArray();
        var local = Evaluator.Run(model, mine.Select(i => data[i]).ToList(), batchSize, padId);
        Span<double> loss = [mine.Length == 0 ? 0 : local.Loss * mine.Length, mine.Length];
        world.AllReduceSum(loss);
        var predictions = new Prediction[data.Count];
        var gathered = world.AllGather(PredictionCodec.Write(local.Predictions));
        for (int r = 0; r < world.Size; r++)
        {
            var part = PredictionCodec.Read(gathered[r]);
            for (int j = 0; j < part.Length; j++) predictions[r + j * world.Size] = part[j];
        }
        return new EvaluationOutput(loss[1] == 0 ? double.NaN : loss[0] / loss[1], predictions);
    }

    public void Dispose() => gradients.Dispose();
}

/// <summary>Predictions as bytes, to gather the ranks' shards of an evaluation.</summary>
static class PredictionCodec
{
    public static byte[] Write(Prediction[] predictions)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream))
        {
            writer.Write(predictions.Length);
            foreach (var p in predictions)
            {
                writer.Write(p.Labels.Length);
                foreach (int label in p.Labels) writer.Write(label);
                writer.Write(p.Probabilities.Length);
                foreach (float probability in p.Probabilities) writer.Write(probability);
                writer.Write(p.Value.HasValue);
                writer.Write(p.Value ?? 0f);
            }
        }
        return stream.ToArray();
    }

    public static Prediction[] Read(byte[] bytes)
    {
        using var reader = new BinaryReader(new MemoryStream(bytes));
        var predictions = new Prediction[reader.ReadInt32()];
        for (int i = 0; i < predictions.Length; i++)
        {
            var labels = new int[reader.ReadInt32()];
            for (int j = 0; j < labels.Length; j++) labels[j] = reader.ReadInt32();
            var probabilities = new float[reader.ReadInt32()];
            for (int j = 0; j < probabilities.Length; j++) probabilities[j] = reader.ReadSingle();
            bool hasValue = reader.ReadBoolean();
            float value = reader.ReadSingle();
            predictions[i] = new Prediction(labels, probabilities, hasValue ? value : null);
        }
        return predictions;
    }
}
