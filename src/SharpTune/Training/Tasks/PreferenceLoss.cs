using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace SharpTune.Training.Tasks;

/// <summary>How a preference run learns from its pairs (<c>--objective</c>, <c>--preference-loss</c>, <c>--beta</c>, <c>--orpo-lambda</c>).</summary>
public sealed record PreferenceOptions
{
    /// <summary>dpo (against a reference model) or orpo (odds ratio over the SFT loss, no reference).</summary>
    [JsonPropertyName("objective")] public string Objective { get; init; } = "dpo";
    /// <summary>DPO's loss: sigmoid (the paper's) or ipo (Azar et al.'s squared loss, on per-token log-probabilities).</summary>
    [JsonPropertyName("loss")] public string Loss { get; init; } = "sigmoid";
    /// <summary>DPO's β: how far the policy may move from the reference (TRL's default 0.1).</summary>
    [JsonPropertyName("beta")] public double Beta { get; init; } = 0.1;
    /// <summary>ORPO's λ, the weight of the odds-ratio term (TRL's <c>beta</c>, default 0.1).</summary>
    [JsonPropertyName("orpo_lambda")] public double OrpoLambda { get; init; } = 0.1;
    /// <summary>Reference log-probabilities computed once before training and kept in the run folder.</summary>
    [JsonPropertyName("precompute_reference")] public bool PrecomputeReference { get; init; }

    public static IReadOnlyList<string> Objectives { get; } = ["dpo", "orpo"];
    public static IReadOnlyList<string> Losses { get; } = ["sigmoid", "ipo"];

    public bool NeedsReference => Objective == "dpo";

    public PreferenceOptions Validate()
    {
        if (!Objectives.Contains(Objective)) throw new ArgumentException($"--objective '{Objective}' is not known: use {string.Join(", ", Objectives)}");
        if (!Losses.Contains(Loss)) throw new ArgumentException($"--preference-loss '{Loss}' is not known: use {string.Join(", ", Losses)}");
        if (Loss != "sigmoid" && Objective != "dpo") throw new ArgumentException($"--preference-loss {Loss} is a DPO loss; --objective {Objective} has its own");
        if (!(Beta > 0) || double.IsInfinity(Beta)) throw new ArgumentException($"--beta must be a positive number, got {Beta}");
        if (!(OrpoLambda > 0) || double.IsInfinity(OrpoLambda)) throw new ArgumentException($"--orpo-lambda must be a positive number, got {OrpoLambda}");
        if (PrecomputeReference && !NeedsReference) throw new ArgumentException("--precompute-reference applies to --objective dpo (ORPO has no reference model)");
        return this;
    }
}

/// <summary>
/// The preference losses, per pair, from the completions' summed log-probabilities and their token counts (TRL's
/// <c>DPOTrainer.dpo_loss</c> and <c>ORPOTrainer.odds_ratio_loss</c>):
/// <list type="bullet">
/// <item>DPO, sigmoid: <c>-log σ(β ((πc - πr) - (refc - refr)))</c>; rewards <c>β (π - ref)</c>.</item>
/// <item>DPO, IPO: <c>(((πc - πr) - (refc - refr)) - 1/(2β))²</c> on log-probabilities averaged per token; rewards likewise.</item>
/// <item>ORPO: <c>NLL(chosen) - λ log σ(log odds(c) - log odds(r))</c>, with per-token averages <c>a</c> and
/// <c>log odds = a - log(1 - e^a)</c>; rewards <c>λ a</c>. The NLL is averaged per pair (TRL averages over the batch's chosen
/// tokens: the same when the completions are equally long), so every pair weighs the same in a data-parallel mean.</item>
/// </list>
/// </summary>
public static class PreferenceLoss
{
    /// <summary>The per-pair losses and rewards, each (N).</summary>
    public sealed record Result(Tensor Losses, Tensor ChosenRewards, Tensor RejectedRewards, Tensor? LogOddsRatio = null, Tensor? LogOdds = null, Tensor? Nll = null);

    /// <param name="chosen">(N) summed log-probabilities of the chosen completions under the policy.</param>
    /// <param name="chosenTokens">(N) their token counts.</param>
    /// <param name="referenceChosen">(N) under the reference (DPO only).</param>
    public static Result Compute(PreferenceOptions options, Tensor chosen, Tensor rejected, Tensor chosenTokens, Tensor rejectedTokens,
        Tensor? referenceChosen, Tensor? referenceRejected)
    {
        if (options.Objective == "orpo")
        {
            var c = chosen / chosenTokens;
            var r = rejected / rejectedTokens;
            // log(1 - e^a) for a < 0, computed as log(-expm1(a)) to keep precision when a is near 0.
            var logOdds = c - r - (log(-expm1(c)) - log(-expm1(r)));
            var ratio = nn.functional.logsigmoid(logOdds);
            var nll = -c;
            return new Result(nll - options.OrpoLambda * ratio, options.OrpoLambda * c.detach(), options.OrpoLambda * r.detach(), ratio.detach(), logOdds.detach(), nll.detach());
        }
        if (referenceChosen is null || referenceRejected is null) throw new ArgumentException("DPO needs the reference model's log-probabilities");
        bool ipo = options.Loss == "ipo";
        var (pc, pr, rc, rr) = ipo
            ? (chosen / chosenTokens, rejected / rejectedTokens, referenceChosen / chosenTokens, referenceRejected / rejectedTokens)
            : (chosen, rejected, referenceChosen, referenceRejected);
        var logits = pc - pr - (rc - rr);
        var losses = ipo ? (logits - 1 / (2 * options.Beta)).pow(2) : -nn.functional.logsigmoid(options.Beta * logits);
        return new Result(losses, options.Beta * (pc - rc).detach(), options.Beta * (pr - rr).detach());
    }
}
