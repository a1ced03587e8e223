using SharpTune.Distributed;
using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// Language modelling as a <see cref="Trainer{TExample}"/> objective: the mean next-token cross-entropy over a batch's
/// target tokens; validation loss (per target token) and perplexity.
/// </summary>
/// <param name="samples">With <c>--eval-generate</c>: generation scored at each evaluation.</param>
public sealed class CausalLmObjective(CausalLmModel model, long padId, GeneratedSamples? samples = null) : ITrainingObjective<CausalLmExample>
{
    public nn.Module Model => model;

    public int Length(CausalLmExample example) => example.Length;

    public Tensor Loss(IReadOnlyList<CausalLmExample> batch)
    {
        var (ids, mask, labels, positions) = CausalLmCollator.Collate(batch, padId);
        return model.Loss(ids, mask, labels, positions);
    }

    /// <summary>The loss averages over target tokens.</summary>
    public double LossWeight(CausalLmExample example) => example.Targets;

    public IReadOnlyDictionary<string, double> Evaluate(IReadOnlyList<CausalLmExample> validation, int batchSize, ICommunicator world)
    {
        // Each rank scores every Size-th example; the sums of log-likelihood and tokens are added over the ranks.
        var mine = world.Size == 1 ? validation : validation.Where((_, i) => i % world.Size == world.Rank).ToList();
        var (local, tokens) = NegativeLogLikelihood(model, mine, batchSize, padId);
        Span<double> sums = [tokens == 0 ? 0 : local * tokens, tokens];
        if (world.Size > 1) world.AllReduceSum(sums);
        double loss = sums[1] == 0 ? double.NaN : sums[0] / sums[1];
        var metrics = new Dictionary<string, double> { ["loss"] = loss, ["perplexity"] = Math.Exp(loss) };
        if (samples is not null)
            foreach (var (key, value) in samples.Score(model, validation)) metrics[key] = value;
        return metrics;
    }

    /// <summary>Mean negative log-likelihood per target token over <paramref name="data"/>, and the number of target tokens.</summary>
    public static (double Loss, long Tokens) NegativeLogLikelihood(CausalLmModel model, IReadOnlyList<CausalLmExample> data, int batchSize, long padId)
    {
        bool wasTraining = model.training;
        model.eval();
        double sum = 0;
        long tokens = 0;
        try
        {
            using var noGrad = no_grad();
            var lengths = data.Select(e => e.Length).ToArray();
            var order = Enumerable.Range(0, data.Count).OrderBy(i => lengths[i]).ToArray();
            for (int start = 0; start < order.Length; start += batchSize)
            {
                using var scope = NewDisposeScope();
                var batch = order.Skip(start).Take(batchSize).Select(i => data[i]).ToList();
                var (ids, mask, labels, positions) = CausalLmCollator.Collate(batch, padId);
                long count = labels.narrow(1, 1, labels.shape[1] - 1).ne(-100).sum().item<long>();
                if (count == 0) continue;
                sum += model.Loss(ids, mask, labels, positions).item<float>() * (double)count;
                tokens += count;
            }
        }
        finally
        {
            model.train(wasTraining);
        }
        return (tokens == 0 ? double.NaN : sum / tokens, tokens);
    }
}
