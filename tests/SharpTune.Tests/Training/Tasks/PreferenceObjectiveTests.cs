using SharpTune.Distributed;
using SharpTune.Heads;
using SharpTune.Models.Decoders;
using SharpTune.Peft;
using SharpTune.Tests.Heads;
using SharpTune.Tests.Models.Decoders;
using SharpTune.Training;
using SharpTune.Training.Tasks;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training.Tasks;

/// <summary>
/// The DPO, IPO and ORPO losses against a computation written out by hand (each sequence alone, no padding, its
/// completion's log-probabilities summed in a loop), the reference as an independent copy of the base, and the losses'
/// gradients against finite differences.
/// </summary>
public class PreferenceObjectiveTests
{
    // Prompt lengths 2, 4 and 1 and completions of different lengths, so padding and prompt masking both matter.
    static readonly (long[] Prompt, long[] Chosen, long[] Rejected)[] Pairs =
    [
        ([1, 17], [23, 5, 9], [40, 41]),
        ([1, 8, 30, 31], [12], [13, 14, 15, 16]),
        ([1], [60, 61], [62, 63, 64]),
    ];

    static CausalLmExample Sequence(long[] prompt, long[] completion)
    {
        var ids = prompt.Concat(completion).ToArray();
        var labels = ids.Select((id, i) => i >= prompt.Length ? id : -100L).ToArray();
        return new CausalLmExample(ids, labels, "test");
    }

    static List<PreferenceExample> Examples() =>
        Pairs.Select(p => new PreferenceExample(Sequence(p.Prompt, p.Chosen), Sequence(p.Prompt, p.Rejected), "test")).ToList();

    /// <summary>Σ log p(completion token | everything before it), one sequence alone, in double.</summary>
    static double LogProb(ICausalLanguageModel model, long[] prompt, long[] completion)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var ids = prompt.Concat(completion).ToArray();
        var logp = model.Forward(tensor(ids, [1, ids.Length])).to(ScalarType.Float64).log_softmax(-1)[0];   // (T, V)
        double sum = 0;
        for (int t = prompt.Length; t < ids.Length; t++) sum += logp[t - 1, ids[t]].item<double>();
        return sum;
    }

    /// <summary>The base the adapter sits on, as a separate model: the decoder's own weights without the adapter's.</summary>
    static ICausalLanguageModel IndependentBase(string family, CausalLmModel adapted)
    {
        var plain = PretrainedDecoder.Create(TinyDecoders.Config(family));
        var weights = adapted.Decoder.Module.state_dict();
        using (no_grad())
            foreach (var (name, parameter) in plain.Module.named_parameters()) parameter.copy_(weights[name]);
        plain.Module.eval();
        return plain;
    }

    static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    [Theory]
    [InlineData("lora", "sigmoid")]
    [InlineData("lora", "ipo")]
    [InlineData("prefix", "sigmoid")]
    [InlineData("prompt", "sigmoid")]
    [InlineData("ia3", "sigmoid")]
    public void The_dpo_loss_equals_the_hand_computed_one_with_the_base_as_reference(string method, string loss)
    {
        using var model = CausalLmMethodTests.Build("llama", method);
        using var reference = IndependentBase("llama", model);
        var options = new PreferenceOptions { Beta = 0.3, Loss = loss };
        var objective = new PreferenceObjective(model, padId: 0, options, referenceIsBase: true);

        double expected = 0;
        foreach (var (prompt, chosen, rejected) in Pairs)
        {
            double pc = LogProb(model, prompt, chosen), pr = LogProb(model, prompt, rejected);
            double rc = LogProb(reference, prompt, chosen), rr = LogProb(reference, prompt, rejected);
            if (loss == "ipo")
            {
                double logits = (pc - rc) / chosen.Length - (pr - rr) / rejected.Length;
                expected += Math.Pow(logits - 1 / (2 * options.Beta), 2);
            }
            else expected += -Math.Log(Sigmoid(options.Beta * (pc - pr - (rc - rr))));
        }
        expected /= Pairs.Length;

        model.eval();   // the hand computation has no dropout either
        using var actual = objective.Loss(Examples());
        Assert.Equal(expected, actual.item<float>(), 1e-4 * Math.Max(1, Math.Abs(expected)));
        // The reference really differs from the policy: an adapter switched off, not an untouched one.
        Assert.True(Math.Abs(LogProb(model, Pairs[0].Prompt, Pairs[0].Chosen) - LogProb(reference, Pairs[0].Prompt, Pairs[0].Chosen)) > 1e-3);
        // And the switch leaves the adapter on afterwards.
        Assert.Equal(expected, objective.Loss(Examples()).item<float>(), 1e-4 * Math.Max(1, Math.Abs(expected)));
    }

    [Fact]
    public void The_orpo_loss_equals_the_hand_computed_one()
    {
        using var model = CausalLmMethodTests.Build("qwen2", "lora");
        var options = new PreferenceOptions { Objective = "orpo", OrpoLambda = 0.25 };
        var objective = new PreferenceObjective(model, padId: 0, options, referenceIsBase: true);
        double expected = 0;
        foreach (var (prompt, chosen, rejected) in Pairs)
        {
            double c = LogProb(model, prompt, chosen) / chosen.Length, r = LogProb(model, prompt, rejected) / rejected.Length;
            double logOdds = c - r - (Math.Log(1 - Math.Exp(c)) - Math.Log(1 - Math.Exp(r)));
            expected += -c - options.OrpoLambda * Math.Log(Sigmoid(logOdds));
        }
        expected /= Pairs.Length;
        using var actual = objective.Loss(Examples());
        Assert.Equal(expected, actual.item<float>(), 1e-4 * Math.Max(1, Math.Abs(expected)));
    }

    [Fact]
    public void Stored_reference_log_probabilities_are_used_and_the_metrics_are_what_trl_logs()
    {
        using var model = CausalLmMethodTests.Build("gpt2", "lora");
        var options = new PreferenceOptions { Beta = 0.5 };
        var fromBase = new PreferenceObjective(model, padId: 0, options, referenceIsBase: true).Evaluate(Examples(), 2, SingleProcess.Instance);
        // The same numbers given as stored references (as --precompute-reference keeps them) give the same metrics.
        var stored = Examples().Select(e =>
        {
            var (ids, mask, labels, _) = CausalLmCollator.Collate([e.Chosen, e.Rejected], 0);
            var sums = PreferenceObjective.ReferenceLogProbs(model, ids, mask, labels).data<double>().ToArray();
            return e with { Reference = (sums[0], sums[1]) };
        }).ToList();
        var fromStore = new PreferenceObjective(model, padId: 0, options, referenceIsBase: false).Evaluate(stored, 2, SingleProcess.Instance);
        foreach (var (key, value) in fromBase) Assert.Equal(value, fromStore[key], 1e-5);

        Assert.Equal(["loss", "rewards_chosen", "rewards_rejected", "reward_accuracy", "reward_margin", "logps_chosen", "logps_rejected"], fromBase.Keys);
        Assert.Equal(fromBase["rewards_chosen"] - fromBase["rewards_rejected"], fromBase["reward_margin"], 1e-9);
        Assert.InRange(fromBase["reward_accuracy"], 0, 1);
        // Without a reference and with a base that trains, there is nothing to compare with.
        Assert.Throws<InvalidOperationException>(() => new PreferenceObjective(model, 0, options, referenceIsBase: false).Loss(Examples()));
    }

    [Theory]
    [InlineData("dpo", "sigmoid")]
    [InlineData("dpo", "ipo")]
    [InlineData("orpo", "sigmoid")]
    public void The_losses_gradients_equal_finite_differences(string objective, string loss)
    {
        var options = new PreferenceOptions { Objective = objective, Loss = loss, Beta = 0.7, OrpoLambda = 0.4 };
        // Two pairs' summed log-probabilities (float64), their token counts and the reference's.
        var chosen = tensor(new[] { -7.5, -3.1 }, requires_grad: true);
        var rejected = tensor(new[] { -9.25, -4.0 }, requires_grad: true);
        var chosenTokens = tensor(new[] { 3.0, 2.0 });
        var rejectedTokens = tensor(new[] { 4.0, 5.0 });
        var referenceChosen = tensor(new[] { -6.9, -2.5 });
        var referenceRejected = tensor(new[] { -8.7, -5.5 });
        double Loss(Tensor c, Tensor r) => PreferenceLoss.Compute(options, c, r, chosenTokens, rejectedTokens, referenceChosen, referenceRejected).Losses.sum().item<double>();

        PreferenceLoss.Compute(options, chosen, rejected, chosenTokens, rejectedTokens, referenceChosen, referenceRejected).Losses.sum().backward();
        const double h = 1e-6;
        using var noGrad = no_grad();
        for (int side = 0; side < 2; side++)
            for (int i = 0; i < 2; i++)
            {
                var (c, r) = (chosen.detach().clone(), rejected.detach().clone());
                var moved = side == 0 ? c : r;
                moved[i] += h;
                double up = Loss(c, r);
                moved[i] -= 2 * h;
                double down = Loss(c, r);
                double analytic = (side == 0 ? chosen.grad! : rejected.grad!)[i].item<double>();
                Assert.Equal((up - down) / (2 * h), analytic, 1e-6);
            }
    }

    [Fact]
    public void Switching_the_adapter_off_gives_the_base_and_switching_back_restores_it()
    {
        using var model = CausalLmMethodTests.Build("llama", "lora");
        using var reference = IndependentBase("llama", model);
        var (prompt, chosen, _) = Pairs[0];
        double adapted = LogProb(model, prompt, chosen);
        using (AdapterSwitch.Off(model)) Assert.Equal(LogProb(reference, prompt, chosen), LogProb(model, prompt, chosen), 1e-5);
        Assert.Equal(adapted, LogProb(model, prompt, chosen), 1e-9);

        using var prompted = CausalLmMethodTests.Build("llama", "prefix");
        double withPrefix = LogProb(prompted, prompt, chosen);
        using (AdapterSwitch.Off(prompted)) Assert.Equal(LogProb(prompted.Decoder, prompt, chosen), LogProb(prompted, prompt, chosen), 1e-9);
        Assert.Equal(withPrefix, LogProb(prompted, prompt, chosen), 1e-9);
    }
}
