using SharpTune.Distributed;
using SharpTune.Heads;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.Training.Tasks;

/// <summary>
/// One preference pair, tokenized: the chosen and the rejected sequence, each with labels on its completion only, and
/// the reference model's summed log-probabilities of both when they were computed before training.
/// </summary>
public sealed record PreferenceExample(CausalLmExample Chosen, CausalLmExample Rejected, string Source)
{
    public (double Chosen, double Rejected)? Reference { get; init; }
}

/// <summary>
/// Preference tuning as a <see cref="Trainer{TExample}"/> objective (TRL's <c>DPOTrainer</c>/<c>ORPOTrainer</c> over its
/// <c>Trainer</c>): both sequences of each pair in one forward pass, the completions' summed log-probabilities, the loss of
/// <see cref="PreferenceLoss"/>, and what TRL logs: rewards of chosen and rejected, reward accuracy and margin,
/// log-probabilities, and for ORPO the log odds and the NLL.
/// </summary>
/// <remarks>
/// The reference of DPO is, in this order: the log-probabilities stored with the example (computed once before training:
/// full fine-tuning, BitFit, or <c>--precompute-reference</c>), else the same model with its adapter switched off
/// (<see cref="AdapterSwitch"/>), under no_grad and in eval mode, so no second copy of the weights is held.
/// </remarks>
/// <param name="referenceIsBase">Whether switching the adapter off gives the reference (an adapter or prompt method); otherwise
/// every example must carry its reference log-probabilities.</param>
public sealed class PreferenceObjective(CausalLmModel model, long padId, PreferenceOptions options, bool referenceIsBase) : ITrainingObjective<PreferenceExample>
{
    public nn.Module Model => model;

    public int Length(PreferenceExample example) => example.Chosen.Length + example.Rejected.Length;

    public Tensor Loss(IReadOnlyList<PreferenceExample> batch)
    {
        using var scope = NewDisposeScope();
        return Score(batch).Result.Losses.mean().to(ScalarType.Float32).MoveToOuterDisposeScope();   // summed in float64, returned as the trainer takes losses
    }

    public string Metric => "loss";

    public IReadOnlyDictionary<string, double> Evaluate(IReadOnlyList<PreferenceExample> validation, int batchSize, ICommunicator world)
    {
        var mine = world.Size == 1 ? validation : validation.Where((_, i) => i % world.Size == world.Rank).ToList();
        var names = MetricNames;
        var sums = new double[names.Count + 1];   // each metric summed over pairs, then the pair count
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            for (int start = 0; start < mine.Count; start += batchSize)
            {
                using var scope = NewDisposeScope();
                var batch = mine.Skip(start).Take(batchSize).ToList();
                var values = PerPair(Score(batch));
                for (int m = 0; m < names.Count; m++) sums[m] += values[names[m]].sum().item<double>();
                sums[^1] += batch.Count;
            }
        }
        finally
        {
            model.train(wasTraining);
        }
        if (world.Size > 1) world.AllReduceSum(sums);
        var metrics = new Dictionary<string, double>();
        for (int m = 0; m < names.Count; m++) metrics[names[m]] = sums[^1] == 0 ? double.NaN : sums[m] / sums[^1];
        return metrics;
    }

    /// <summary>What an evaluation reports (TRL's names with _ for /), each a mean over the pairs.</summary>
    public IReadOnlyList<string> MetricNames => options.Objective == "orpo"
        ? ["loss", "rewards_chosen", "rewards_rejected", "reward_accuracy", "reward_margin", "logps_chosen", "logps_rejected", "log_odds_ratio", "log_odds_chosen", "nll"]
        : ["loss", "rewards_chosen", "rewards_rejected", "reward_accuracy", "reward_margin", "logps_chosen", "logps_rejected"];

    Dictionary<string, Tensor> PerPair((PreferenceLoss.Result Result, Tensor Chosen, Tensor Rejected) scored)
    {
        var (result, chosen, rejected) = scored;
        var values = new Dictionary<string, Tensor>
        {
            ["loss"] = result.Losses.detach(), ["rewards_chosen"] = result.ChosenRewards, ["rewards_rejected"] = result.RejectedRewards,
            ["reward_accuracy"] = result.ChosenRewards.gt(result.RejectedRewards).to(ScalarType.Float64),
            ["reward_margin"] = result.ChosenRewards - result.RejectedRewards,
            ["logps_chosen"] = chosen.detach(), ["logps_rejected"] = rejected.detach(),
        };
        if (result.LogOddsRatio is { } ratio) values["log_odds_ratio"] = ratio;
        if (result.LogOdds is { } odds) values["log_odds_chosen"] = odds;
        if (result.Nll is { } nll) values["nll"] = nll;
        return values;
    }

    (PreferenceLoss.Result Result, Tensor Chosen, Tensor Rejected) Score(IReadOnlyList<PreferenceExample> batch)
    {
        var sequences = batch.Select(p => p.Chosen).Concat(batch.Select(p => p.Rejected)).ToList();
        var (ids, mask, labels, _) = CausalLmCollator.Collate(sequences, padId);
        var (sums, tokens) = SequenceLogProbs(model, ids, mask, labels);                     // (2N) each
        int n = batch.Count;
        Tensor? referenceChosen = null, referenceRejected = null;
        if (options.NeedsReference)
        {
            Tensor reference;
            if (batch.All(p => p.Reference is not null))
                reference = tensor(batch.Select(p => p.Reference!.Value.Chosen).Concat(batch.Select(p => p.Reference!.Value.Rejected)).ToArray());
            else if (referenceIsBase)
                reference = ReferenceLogProbs(model, ids, mask, labels);
            else
                throw new InvalidOperationException("the reference log-probabilities of a model whose base trains must be computed before training");
            referenceChosen = reference.narrow(0, 0, n);
            referenceRejected = reference.narrow(0, n, n);
        }
        var chosen = sums.narrow(0, 0, n);
        var rejected = sums.narrow(0, n, n);
        var result = PreferenceLoss.Compute(options, chosen, rejected, tokens.narrow(0, 0, n), tokens.narrow(0, n, n), referenceChosen, referenceRejected);
        return (result, chosen, rejected);
    }

    /// <summary>
    /// The summed log-probability (float64) of each sequence's labelled tokens and their count, each (B): position t predicts
    /// label t + 1, as the training loss.
    /// </summary>
    public static (Tensor Sums, Tensor Tokens) SequenceLogProbs(CausalLmModel model, Tensor ids, Tensor mask, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var sums = model.LabelledLogProbs(ids, mask, labels);                                   // the head in chunks: no (B, T, V) logits
        var tokens = labels.narrow(1, 1, labels.shape[1] - 1).ne(-100).sum(1).to(ScalarType.Float64);
        return (sums.MoveToOuterDisposeScope(), tokens.MoveToOuterDisposeScope());
    }

    /// <summary>The reference's log-probabilities: the same model with its adapter and prompt switched off, in eval mode, no gradients.</summary>
    public static Tensor ReferenceLogProbs(CausalLmModel model, Tensor ids, Tensor mask, Tensor labels)
    {
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            using var off = AdapterSwitch.Off(model);
            return SequenceLogProbs(model, ids, mask, labels).Sums;
        }
        finally
        {
            model.train(wasTraining);
        }
    }
}
