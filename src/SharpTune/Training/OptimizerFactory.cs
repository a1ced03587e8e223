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
    public static optim.Optimizer Create(string name, nn.Module model, double learningRate, double weightDecay, double momentum)
    {
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        if (trainable.Count == 0) throw new ArgumentException("Nothing to train: every parameter is frozen.");
        switch (name.ToLowerInvariant())
        {
            case "adamw":
            {
                var decay = trainable.Where(p => p.parameter.dim() >= 2).Select(p => p.parameter).ToList();
                var noDecay = trainable.Where(p => p.parameter.dim() < 2).Select(p => p.parameter).ToList();
                var groups = new List<AdamW.ParamGroup>();
                if (decay.Count > 0) groups.Add(new AdamW.ParamGroup(decay, new AdamW.Options { LearningRate = learningRate, weight_decay = weightDecay }));
                if (noDecay.Count > 0) groups.Add(new AdamW.ParamGroup(noDecay, new AdamW.Options { LearningRate = learningRate, weight_decay = 0 }));
                return optim.AdamW(groups, learningRate, weight_decay: weightDecay);
            }
            case "adam":
                return optim.Adam(trainable.Select(p => p.parameter), learningRate, weight_decay: weightDecay);
            case "sgd":
                return optim.SGD(trainable.Select(p => p.parameter), learningRate, momentum: momentum, weight_decay: weightDecay);
            default:
                throw new ArgumentException($"--optimizer '{name}' is not known: use {string.Join(", ", Names)}");
        }
    }
}
