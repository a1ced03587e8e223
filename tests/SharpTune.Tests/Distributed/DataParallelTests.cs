using SharpTune.Distributed;
using SharpTune.Heads;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Distributed;

public class DataParallelTests
{
    static EncodedExample Sentence(int words, int labelled) => new([2, 5, 3], [0, 0, 0], "s",
        WordStarts: Enumerable.Range(1, words).ToArray(), WordLabels: Enumerable.Range(0, words).Select(w => w < labelled ? 1 : -100).ToArray());

    [Fact]
    public void Shards_cover_the_global_batch_once_and_shares_add_up_to_one()
    {
        var data = new[] { Sentence(3, 3), Sentence(5, 1), Sentence(2, 2), Sentence(4, 0), Sentence(6, 6) };
        int[] global = [4, 0, 3, 2, 1];
        var head = new HeadOptions(TaskKind.Tokens, 3);
        var results = InProcessJob.Run(2, world =>
        {
            using var parallel = new DataParallel(world, []);
            var shard = parallel.Shard(global);
            return (shard, parallel.LossShare(global, shard, i => TaskHeads.Create(head).LossWeight(data[i])));
        });
        Assert.Equal(global.Order(), results.SelectMany(r => r.shard).Order());
        // Labelled words decide the weights of a token task: rank 0 has examples 4, 3, 1 (6 + 0 + 1), rank 1 has 0, 2 (3 + 2).
        Assert.Equal([4, 3, 1], results[0].shard);
        Assert.Equal(7.0 / 12, results[0].Item2, 12);
        Assert.Equal(5.0 / 12, results[1].Item2, 12);
    }

    [Fact]
    public void Class_weights_weight_the_shares_as_cross_entropy_weights_its_mean()
    {
        var data = new[] { 0, 1, 1, 0 }.Select(c => new EncodedExample([2, 3], [0, 0], "t", ClassId: c)).ToArray();
        var head = new HeadOptions(TaskKind.SingleLabel, 2, ClassWeights: [1f, 3f]);
        var shares = InProcessJob.Run(2, world =>
        {
            using var parallel = new DataParallel(world, []);
            int[] global = [0, 1, 2, 3];
            return parallel.LossShare(global, parallel.Shard(global), i => TaskHeads.Create(head).LossWeight(data[i]));
        });
        Assert.Equal(new[] { 4.0 / 8, 4.0 / 8 }, shares);   // ranks get {0, 2} (1 + 3) and {1, 3} (3 + 1)
    }

    [Fact]
    public void Dropout_seeds_continue_the_single_process_sequence_and_differ_per_rank()
    {
        var seeds = InProcessJob.Run(2, world =>
        {
            using var parallel = new DataParallel(world, []);
            return Enumerable.Range(0, 3).Select(step => parallel.DropoutSeed(42, step)).ToArray();
        });
        using var single = new DataParallel(SingleProcess.Instance, []);
        Assert.Equal(42 * 1_000_003L + 5, single.DropoutSeed(42, 5));
        Assert.Empty(seeds[0].Intersect(seeds[1]));
    }

    [Fact]
    public void Ranks_that_differ_fail_naming_what_differs()
    {
        var errors = InProcessJob.Run(2, world =>
        {
            try
            {
                DataParallelJob.CheckSameRun(world, new Dictionary<string, string> { ["its options"] = "a", ["the --train file"] = world.Rank == 0 ? "1" : "2" });
                return "";
            }
            catch (InvalidDataException e) { return e.Message; }
        });
        Assert.All(errors, e => Assert.Contains("rank 1 differs from rank 0 in the --train file", e));
        Assert.Equal("", InProcessJob.Run(2, world =>
        {
            DataParallelJob.CheckSameRun(world, new Dictionary<string, string> { ["its options"] = "a" });
            return "";
        })[1]);
    }

    [Fact]
    public void Predictions_survive_the_trip_between_ranks()
    {
        Prediction[] predictions = [new([1], [0.25f, 0.75f], null), new([0, 2, 1], [], null), new([], [], 3.5f)];
        var back = PredictionCodec.Read(PredictionCodec.Write(predictions));
        Assert.Equal(predictions.Length, back.Length);
        for (int i = 0; i < predictions.Length; i++)
        {
            Assert.Equal(predictions[i].Labels, back[i].Labels);
            Assert.Equal(predictions[i].Probabilities, back[i].Probabilities);
            Assert.Equal(predictions[i].Value, back[i].Value);
        }
    }
}
