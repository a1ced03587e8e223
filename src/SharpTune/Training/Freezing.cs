using SharpTune.Heads;
using SharpTune.Models;
using TorchSharp.Modules;

namespace SharpTune.Training;

/// <summary>Which parameters train. Parsed from <c>full</c>, <c>head</c>, <c>embeddings</c> or <c>freeze:K</c>.</summary>
public sealed record FreezePolicy(FreezePolicy.Mode What, int Layers = 0)
{
    public enum Mode
    {
        /// <summary>Everything trains.</summary>
        None,
        /// <summary>Only the task head trains; the whole encoder (pooler included) is frozen.</summary>
        Encoder,
        /// <summary>The embeddings are frozen; every layer trains.</summary>
        Embeddings,
        /// <summary>The embeddings and the bottom <see cref="Layers"/> layers are frozen.</summary>
        BottomLayers,
    }

    public static FreezePolicy Full { get; } = new(Mode.None);

    /// <summary>Parses full, head, embeddings or freeze:K; for any other value see <see cref="TrainingMethods.Parse"/>.</summary>
    public static FreezePolicy Parse(string text) =>
        TryParse(text) ?? throw new ArgumentException(TrainingMethods.UnknownMessage(text));

    public static FreezePolicy? TryParse(string text)
    {
        string value = text.Trim().ToLowerInvariant();
        if (value is "full" or "none") return Full;
        if (value is "head" or "encoder") return new(Mode.Encoder);
        if (value == "embeddings") return new(Mode.Embeddings);
        if (value.StartsWith("freeze:", StringComparison.Ordinal) || value.StartsWith("layers:", StringComparison.Ordinal))
        {
            string count = value[(value.IndexOf(':') + 1)..];
            if (int.TryParse(count, out int k) && k >= 0) return new(Mode.BottomLayers, k);
        }
        return null;
    }

    public override string ToString() => What switch
    {
        Mode.None => "full",
        Mode.Encoder => "head",
        Mode.Embeddings => "embeddings",
        _ => $"freeze:{Layers}",
    };

    /// <summary>Sets <c>requires_grad</c> on every parameter of <paramref name="model"/> by the backbone's names.</summary>
    public void Apply(ITunableModel model)
    {
        var names = model.Backbone.Names;
        int layerCount = model.Backbone.LayerCount;
        if (What == Mode.BottomLayers && Layers > layerCount)
            throw new ArgumentException($"--method freeze:{Layers} asks for more layers than the model has ({layerCount}).");
        foreach (var (name, parameter) in model.NamedParameters())
            parameter.requires_grad = !IsFrozen(names, model, name);
    }

    bool IsFrozen(BackboneNames names, ITunableModel model, string name)
    {
        if (model.IsHead(name) || !names.IsBackbone(name)) return false; // the head always trains
        return What switch
        {
            Mode.None => false,
            Mode.Encoder => true,
            Mode.Embeddings => names.IsEmbedding(name),
            _ => names.IsEmbedding(name) || names.LayerIndex(name) is { } i && i < Layers,
        };
    }
}

/// <summary>Trainable and total parameter counts.</summary>
public sealed record ParameterSummary(long Trainable, long Total)
{
    public double Fraction => Total == 0 ? 0 : (double)Trainable / Total;

    public static ParameterSummary Of(TorchSharp.torch.nn.Module module)
    {
        long trainable = 0, total = 0;
        foreach (Parameter p in module.parameters())
        {
            total += p.numel();
            if (p.requires_grad) trainable += p.numel();
        }
        return new ParameterSummary(trainable, total);
    }

    public override string ToString() => $"trainable parameters {Trainable:N0} of {Total:N0} ({Fraction:P2})";
}
