using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// One tokenized example with its target. Exactly one target field is set, by task: <see cref="ClassId"/>
/// (single-label), <see cref="ClassIds"/> (multi-label), <see cref="Value"/> (regression) or
/// <see cref="WordLabels"/> (token tasks, one per entry of <see cref="WordStarts"/>).
/// </summary>
public sealed record EncodedExample(
    long[] InputIds,
    long[] TokenTypeIds,
    string Source,
    int[]? WordStarts = null,
    int ClassId = -1,
    int[]? ClassIds = null,
    float Value = 0,
    int[]? WordLabels = null) : ITaskTarget
{
    public int Length => InputIds.Length;
}

/// <summary>Turns lists of encoded examples into padded tensors: dynamic padding to the longest in the batch.</summary>
public static class Collator
{
    /// <summary>Pads the token ids; the task's head collates the targets (and, for token tasks, where the words start).</summary>
    public static (ModelInputs Inputs, Tensor Labels) Collate(IReadOnlyList<EncodedExample> batch, HeadOptions head, long padId) =>
        Collate(batch, TaskHeads.Create(head), padId);

    /// <summary>Pads the token ids; <paramref name="head"/> (a model's <see cref="TaskModel.TaskHead"/>) collates the targets.</summary>
    public static (ModelInputs Inputs, Tensor Labels) Collate(IReadOnlyList<EncodedExample> batch, ITaskHead head, long padId)
    {
        int size = batch.Count;
        int length = batch.Max(e => e.Length);
        var ids = new long[size * length];
        var mask = new long[size * length];
        var types = new long[size * length];
        Array.Fill(ids, padId);
        for (int b = 0; b < size; b++)
        {
            var e = batch[b];
            Array.Copy(e.InputIds, 0, ids, b * length, e.Length);
            Array.Copy(e.TokenTypeIds, 0, types, b * length, e.Length);
            Array.Fill(mask, 1L, b * length, e.Length);
        }
        var targets = head.Collate(batch);
        var inputs = new ModelInputs(tensor(ids, [size, length]), tensor(mask, [size, length]), tensor(types, [size, length]),
            targets.WordPositions, targets.WordMask);
        return (inputs, targets.Labels);
    }
}

/// <summary>
/// Length-bucketed batches: shuffle, cut into pools of 50 batches, sort each pool by length, cut into
/// batches, shuffle the batch order. Short texts then share batches with short texts and don't pay for
/// long ones, while the order stays random. Deterministic in (seed, epoch), which is what lets a resumed
/// run skip exactly the batches it already took.
/// </summary>
public static class Batcher
{
    const int PoolBatches = 50;

    public static List<int[]> TrainingBatches(IReadOnlyList<EncodedExample> data, int batchSize, int seed, int epoch) =>
        TrainingBatches(data.Select(e => e.Length).ToArray(), batchSize, seed, epoch);

    /// <summary>The same, from each example's length.</summary>
    public static List<int[]> TrainingBatches(IReadOnlyList<int> lengths, int batchSize, int seed, int epoch)
    {
        var data = lengths;
        // A seed fixed across processes: HashCode.Combine is randomised per process and would give a resumed run,
        // or a rerun, another data order.
        var random = new Random(unchecked(seed * 1_000_003 + epoch * 7_919 + 0x5eed));
        var order = Enumerable.Range(0, data.Count).ToArray();
        random.Shuffle(order);
        var batches = new List<int[]>();
        int pool = batchSize * PoolBatches;
        for (int start = 0; start < order.Length; start += pool)
        {
            var sorted = order.Skip(start).Take(pool).OrderBy(i => data[i]).ThenBy(i => i).ToArray();
            for (int b = 0; b < sorted.Length; b += batchSize)
                batches.Add(sorted.Skip(b).Take(batchSize).ToArray());
        }
        var shuffled = batches.ToArray();
        random.Shuffle(shuffled);
        return shuffled.ToList();
    }

    /// <summary>Evaluation batches: sorted by length for speed; predictions are put back in input order by the caller.</summary>
    public static List<int[]> EvaluationBatches(IReadOnlyList<EncodedExample> data, int batchSize)
    {
        var sorted = Enumerable.Range(0, data.Count).OrderBy(i => data[i].Length).ThenBy(i => i).ToArray();
        var batches = new List<int[]>();
        for (int b = 0; b < sorted.Length; b += batchSize) batches.Add(sorted.Skip(b).Take(batchSize).ToArray());
        return batches;
    }
}
