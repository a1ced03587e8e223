using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>Builds the optimizer over the trainable parameters only.</summary>
public static class OptimizerFactory
{
    public static readonly string[] Names = ["adamw", "adam", "sgd"];

    /// <summary>
    /// AdamW decays only weights with two or more dimensions: biases and LayerNorm weights are left alone
    /// (as nanoGPT and HF's Trainer do). Adam and SGD apply <paramref name="weightDecay"/> as L2 to all.
    /// </summary>
    /// <param name="loraPlusLrRatio">
    /// LoRA+ (Hayou et al. 2024, PEFT's <c>create_loraplus_optimizer</c>): the <c>lora_B</c> matrices, and as in the
    /// reference every 1-d parameter (biases, norms, DoRA's magnitude), in groups at <paramref name="learningRate"/> times
    /// this ratio; null: every parameter at one rate.
    /// </param>
    public static optim.Optimizer Create(string name, nn.Module model, double learningRate, double weightDecay, double momentum, double? loraPlusLrRatio = null)
    {
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        if (trainable.Count == 0) throw new ArgumentException("Nothing to train: every parameter is frozen.");
        if (loraPlusLrRatio is { } ratio && !trainable.Any(p => IsLoraB(p.name)))
            throw new ArgumentException("--loraplus-lr-ratio: the model has no trainable lora_B matrix (it applies to --method lora)");
        // (parameters, rate, decays): one group per rate and decay, rates in the order the scheduler keeps them.
        var groups = trainable
            .GroupBy(p => (Fast: loraPlusLrRatio is not null && (IsLoraB(p.name) || p.parameter.dim() < 2), Decays: p.parameter.dim() >= 2))
            .OrderBy(g => g.Key.Fast).ThenByDescending(g => g.Key.Decays)
            .Select(g => (Parameters: g.Select(p => p.parameter).ToList(), Rate: g.Key.Fast ? learningRate * loraPlusLrRatio!.Value : learningRate, g.Key.Decays))
            .ToList();
        switch (name.ToLowerInvariant())
        {
            case "adamw":
                return optim.AdamW(groups.Select(g => new AdamW.ParamGroup(g.Parameters, new AdamW.Options { LearningRate = g.Rate, weight_decay = g.Decays ? weightDecay : 0 })),
                    learningRate, weight_decay: weightDecay);
            case "adam":
                return loraPlusLrRatio is null ? optim.Adam(trainable.Select(p => p.parameter), learningRate, weight_decay: weightDecay)
                    : optim.Adam(ByRate(groups).Select(g => new Adam.ParamGroup(g.Parameters, new Adam.Options { LearningRate = g.Rate, weight_decay = weightDecay })),
                        learningRate, weight_decay: weightDecay);
            case "sgd":
                return loraPlusLrRatio is null ? optim.SGD(trainable.Select(p => p.parameter), learningRate, momentum: momentum, weight_decay: weightDecay)
                    : optim.SGD(ByRate(groups).Select(g => new SGD.ParamGroup(g.Parameters, new SGD.Options { LearningRate = g.Rate, momentum = momentum, weight_decay = weightDecay })),
                        learningRate, momentum: momentum, weight_decay: weightDecay);
            default:
                throw new ArgumentException($"--optimizer '{name}' is not known: use {string.Join(", ", Names)}");
        }
    }

    static bool IsLoraB(string name) => name.Contains(".lora_B.", StringComparison.Ordinal);

    /// <summary>Adam and SGD decay every parameter alike: groups by rate only.</summary>
    static IEnumerable<(List<Parameter> Parameters, double Rate)> ByRate(IEnumerable<(List<Parameter> Parameters, double Rate, bool Decays)> groups) =>
        groups.GroupBy(g => g.Rate).Select(g => (g.SelectMany(x => x.Parameters).ToList(), g.Key));
}
