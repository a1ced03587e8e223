using SharpTune.Distributed;
using static TorchSharp.torch;

namespace SharpTune.Tests.Distributed;

public class GradientAllReduceTests
{
    /// <summary>Parameters of odd sizes; rank r's gradient of parameter i is (i + 1) * (r + 1) everywhere.</summary>
    static List<Tensor> Parameters(int rank, bool[] withGradient)
    {
        long[][] shapes = [[3, 5], [7], [2, 2, 3], [11], [1]];
        var parameters = new List<Tensor>();
        for (int i = 0; i < shapes.Length; i++)
        {
            var p = zeros(shapes[i]).requires_grad_(true);
            if (withGradient[i]) p.grad = full(shapes[i], (i + 1f) * (rank + 1));
            parameters.Add(p);
        }
        return parameters;
    }

    [Theory]
    [InlineData(16)]          // a bucket per parameter or so: many reductions
    [InlineData(25L << 20)]   // one bucket
    public void Gradients_become_their_sum_over_the_ranks_in_any_bucket_size(long bucketBytes)
    {
        var sums = InProcessJob.Run(2, world =>
        {
            var parameters = Parameters(world.Rank, [true, true, true, true, true]);
            using var reduce = new GradientAllReduce(world, parameters, bucketBytes);
            reduce.SumOverRanks();
            return parameters.Select(p => p.grad!.data<float>().ToArray()).ToList();
        });
        foreach (var rank in sums)
            for (int i = 0; i < rank.Count; i++)
                Assert.All(rank[i], v => Assert.Equal((i + 1f) * 3, v));   // (i + 1) x (1 + 2)
    }

    [Fact]
    public void A_gradient_missing_on_one_rank_counts_as_zeros_and_one_missing_everywhere_stays_missing()
    {
        var grads = InProcessJob.Run(2, world =>
        {
            // Parameter 1 has a gradient on rank 0 only (rank 1's shard was empty); parameter 3 on no rank (an unused branch).
            var parameters = Parameters(world.Rank, [true, world.Rank == 0, true, false, true]);
            using var reduce = new GradientAllReduce(world, parameters, bucketBytes: 40);
            reduce.SumOverRanks();
            return parameters.Select(p => p.grad?.data<float>().ToArray()).ToList();
        });
        foreach (var rank in grads)
        {
            Assert.All(rank[1]!, v => Assert.Equal(2f, v));   // rank 0's alone
            Assert.Null(rank[3]);                              // the optimizer still skips it, as in one process
            Assert.All(rank[4]!, v => Assert.Equal(15f, v));
        }
    }

    [Fact]
    public void Buckets_hold_at_most_the_limit_unless_one_parameter_is_larger()
    {
        var parameters = Parameters(0, [true, true, true, true, true]);   // 15, 7, 12, 11, 1 elements
        using var reduce = new GradientAllReduce(SingleProcess.Instance, parameters, bucketBytes: 12 * sizeof(float));
        // Reverse order: [1, 11] is 12, then [12], then [7], then [15] alone (larger than the limit).
        Assert.Equal(4, reduce.BucketCount);
        reduce.SumOverRanks();   // a single process: nothing changes
        Assert.All(parameters[0].grad!.data<float>().ToArray(), v => Assert.Equal(1f, v));
    }

    [Fact]
    public void A_single_process_accepts_any_dtype_and_a_job_refuses_all_but_float32()
    {
        var half = new List<Tensor> { zeros([3], ScalarType.BFloat16).requires_grad_(true) };
        using (new GradientAllReduce(SingleProcess.Instance, half)) { }
        var errors = InProcessJob.Run(2, world =>
        {
            try { using var reduce = new GradientAllReduce(world, half); return ""; }
            catch (NotSupportedException e) { return e.Message; }
        });
        Assert.All(errors, e => Assert.Contains("float32", e));
    }

    [Fact]
    public void Broadcast_gives_every_rank_the_root_s_values()
    {
        var values = InProcessJob.Run(3, world =>
        {
            var tensors = new[] { full([4, 3], (float)world.Rank), arange(5, dtype: ScalarType.Float32) * (world.Rank + 1) };
            TensorBroadcast.FromRoot(world, tensors);
            var text = TensorBroadcast.Bytes(world, world.Rank == 0 ? "rank zero"u8.ToArray() : "x"u8.ToArray());
            return (tensors[0].sum().item<float>(), tensors[1].data<float>().ToArray(), System.Text.Encoding.UTF8.GetString(text));
        });
        foreach (var (sum, range, text) in values)
        {
            Assert.Equal(0f, sum);
            Assert.Equal([0f, 1, 2, 3, 4], range);
            Assert.Equal("rank zero", text);
        }
    }
}
