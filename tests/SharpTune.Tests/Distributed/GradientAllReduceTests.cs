using SharpTune.Distributed;
using SharpTune.Training;
using TorchSharp.Modules;
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

    /// <summary>Three layers marked as a model's stack marks them, then a head outside the stack.</summary>
    sealed class Stack : nn.Module
    {
        readonly ModuleList<Linear> layers;
        readonly Linear head;

        public Stack() : base(nameof(Stack))
        {
            layers = nn.ModuleList(nn.Linear(5, 7), nn.Linear(7, 7), nn.Linear(7, 3));
            head = nn.Linear(3, 2);
            RegisterComponents();
        }

        public Tensor Loss(Tensor x)   // x (B, 5)
        {
            foreach (var layer in layers) x = layer.forward(LayerBoundary.Enter(x, layer)).tanh();
            return head.forward(x).square().mean();
        }
    }

    /// <summary>Inputs and weights from formulas, not from the random generator the rank threads share.</summary>
    static Tensor Input(int rank) => (arange(15, dtype: ScalarType.Float32) * (0.7 + rank)).sin().reshape(3, 5);

    static Stack Model()
    {
        var model = new Stack();
        using var noGrad = no_grad();
        int k = 0;
        foreach (var p in model.parameters()) p.copy_((arange(p.numel(), dtype: ScalarType.Float32) * 0.37 + k++).sin().reshape(p.shape) * 0.5f);
        return model;
    }

    [Fact]
    public void Layers_that_backward_finished_start_their_sums_during_backward_and_the_sums_hold_over_steps()
    {
        var results = InProcessJob.Run(2, world =>
        {
            var model = Model();   // the same weights on both ranks
            var named = model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).ToList();
            var parameters = named.Select(p => p.Item2).ToList();
            // What the sum must be: both ranks' gradients, computed here without any reduction.
            foreach (int r in new[] { 0, 1 }) model.Loss(Input(r)).backward();
            var expected = parameters.Select(p => p.grad!.clone()).ToList();
            foreach (var p in parameters) p.grad = null;

            var (order, stackEnd) = DataParallel.BucketOrder(named.Select(p => p.Item1).ToList());
            using var reduce = new GradientAllReduce(world, parameters, bucketBytes: 4, order: order, groupEnds: new HashSet<int> { stackEnd });
            var started = new List<int>();
            var errors = new List<float>();
            for (int step = 0; step < 2; step++)
            {
                reduce.Backward(model.Loss(Input(world.Rank)), endsStep: true);
                started.Add(reduce.StartedDuringBackward);
                reduce.SumOverRanks();
                errors.Add(parameters.Zip(expected).Max(pe => (pe.First.grad! - pe.Second).abs().max().item<float>()));
                foreach (var p in parameters) p.grad!.zero_();   // as the optimizer's zero_grad: in place, so the next backward adds into the buckets
            }
            return (started, errors, order.Take(stackEnd).Select(i => named[i].Item1).ToList());
        });
        foreach (var (started, errors, stack) in results)
        {
            // One bucket per parameter (4 bytes): layers 2 and 1 (weight and bias each) start during backward; layer 0's
            // input needs no gradient, so its buckets and the head's start after.
            Assert.Equal([4, 4], started);
            Assert.All(errors, e => Assert.True(e < 1e-6f, $"gradient off the two ranks' sum by {e}"));
            Assert.Equal(["layers.2.bias", "layers.2.weight", "layers.1.bias", "layers.1.weight", "layers.0.bias", "layers.0.weight"], stack);
        }
    }

    [Fact]
    public void A_backward_that_does_not_end_a_step_starts_nothing_and_the_step_still_sums_every_micro_step()
    {
        var results = InProcessJob.Run(2, world =>
        {
            var model = Model();
            var named = model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).ToList();
            var parameters = named.Select(p => p.Item2).ToList();
            foreach (int r in new[] { 0, 1 }) { model.Loss(Input(r)).backward(); model.Loss(Input(r) * 2).backward(); }
            var expected = parameters.Select(p => p.grad!.clone()).ToList();
            foreach (var p in parameters) p.grad = null;

            var (order, stackEnd) = DataParallel.BucketOrder(named.Select(p => p.Item1).ToList());
            using var reduce = new GradientAllReduce(world, parameters, bucketBytes: 4, order: order, groupEnds: new HashSet<int> { stackEnd });
            reduce.Backward(model.Loss(Input(world.Rank)), endsStep: false);
            int early = reduce.StartedDuringBackward;
            reduce.Backward(model.Loss(Input(world.Rank) * 2), endsStep: true);
            reduce.SumOverRanks();
            return (early, parameters.Zip(expected).Max(pe => (pe.First.grad! - pe.Second).abs().max().item<float>()));
        });
        foreach (var (early, error) in results)
        {
            Assert.Equal(0, early);
            Assert.True(error < 1e-6f, $"gradient off the sum of both ranks' two micro-steps by {error}");
        }
    }

    [Fact]
    public void A_rank_without_a_backward_starts_every_bucket_after_the_others_started_theirs_during_backward()
    {
        var results = InProcessJob.Run(2, world =>
        {
            var model = Model();
            var named = model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).ToList();
            var parameters = named.Select(p => p.Item2).ToList();
            model.Loss(Input(0)).backward();   // rank 1's shard is empty: the sum is rank 0's gradient
            var expected = parameters.Select(p => p.grad!.clone()).ToList();
            foreach (var p in parameters) p.grad = null;

            var (order, stackEnd) = DataParallel.BucketOrder(named.Select(p => p.Item1).ToList());
            using var reduce = new GradientAllReduce(world, parameters, bucketBytes: 4, order: order, groupEnds: new HashSet<int> { stackEnd });
            if (world.Rank == 0) reduce.Backward(model.Loss(Input(0)), endsStep: true);
            // Between backward and the sums, a collective of the world (the loss exchange) the early sums must not cross.
            Span<double> loss = [world.Rank];
            world.AllReduceSum(loss);
            int early = reduce.StartedDuringBackward;
            reduce.SumOverRanks();
            return (early, parameters.Zip(expected).Max(pe => (pe.First.grad! - pe.Second).abs().max().item<float>()));
        });
        Assert.Equal(4, results[0].early);
        Assert.Equal(0, results[1].early);
        Assert.All(results, r => Assert.True(r.Item2 < 1e-6f, $"gradient off rank 0's by {r.Item2}"));
    }
}
