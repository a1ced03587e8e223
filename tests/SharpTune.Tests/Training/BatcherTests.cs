using SharpTune.Training;

namespace SharpTune.Tests.Training;

public class BatcherTests
{
    static List<EncodedExample> Data(int count) =>
        Enumerable.Range(0, count).Select(i => new EncodedExample(new long[3 + i % 5], new long[3 + i % 5], $"row:{i}")).ToList();

    [Fact]
    public void The_batch_order_is_a_pure_function_of_seed_and_epoch_across_processes()
    {
        // Pinned: a resumed run (a new process) must see exactly the batches the interrupted one would have.
        var batches = Batcher.TrainingBatches(Data(10), batchSize: 4, seed: 42, epoch: 1);
        Assert.Equal(PinnedOrder, string.Join(" | ", batches.Select(b => string.Join(",", b))));
        Assert.Equal(Enumerable.Range(0, 10), batches.SelectMany(b => b).Order());
        Assert.NotEqual(PinnedOrder, string.Join(" | ", Batcher.TrainingBatches(Data(10), 4, 42, epoch: 2).Select(b => string.Join(",", b))));
    }

    const string PinnedOrder = "4,9 | 0,5,1,6 | 2,7,3,8";
}
