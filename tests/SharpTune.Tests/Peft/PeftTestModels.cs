using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Models.Bert;
using SharpTune.Peft;
using SharpTune.Tests.Training;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>Tiny task models built with a parameter-efficient method, on the base weights of <see cref="TestModels.TinyModel"/>.</summary>
internal static class PeftTestModels
{
    /// <summary>
    /// The cases every Linear-wrapping method runs through: a name, the method, and settings with odd sizes
    /// (LoRA r 3 over three kinds of layer) so shape bugs show.
    /// </summary>
    public static (IPeftMethod Method, PeftSettings Settings) Case(string name) => name switch
    {
        "lora" => (PeftRegistry.Get("lora"), new PeftSettings { LoraR = 3, LoraAlpha = 5, LoraTargets = ["query", "value", "intermediate.dense"] }),
        "lora-bias-all" => (PeftRegistry.Get("lora"), new PeftSettings { LoraR = 2, LoraAlpha = 4, LoraBias = "all" }),
        "lora-bias-lora_only" => (PeftRegistry.Get("lora"), new PeftSettings { LoraR = 3, LoraAlpha = 7, LoraBias = "lora_only", LoraTargets = ["key", "pooler.dense"] }),
        // The LoRA variants (DoRA, rsLoRA, the starts that read the weight) through the same matrix as plain LoRA.
        "lora-dora" => (PeftRegistry.Get("lora"), new PeftSettings { LoraR = 3, LoraAlpha = 5, LoraDora = true, LoraTargets = ["query", "value", "intermediate.dense"] }),
        "lora-rslora-gaussian" => (PeftRegistry.Get("lora"), new PeftSettings { LoraR = 3, LoraAlpha = 5, LoraRsLora = true, LoraInit = "gaussian", LoraBias = "lora_only" }),
        "lora-pissa" => (PeftRegistry.Get("lora"), new PeftSettings { LoraR = 3, LoraAlpha = 5, LoraInit = "pissa", LoraTargets = ["query", "value", "intermediate.dense"] }),
        "lora-olora-rslora" => (PeftRegistry.Get("lora"), new PeftSettings { LoraR = 2, LoraAlpha = 3, LoraInit = "olora", LoraRsLora = true, LoraTargets = ["key", "output.dense"] }),
        "lora-dora-pissa" => (PeftRegistry.Get("lora"), new PeftSettings { LoraR = 3, LoraAlpha = 7, LoraDora = true, LoraInit = "pissa", LoraBias = "all" }),
        "ia3" => (PeftRegistry.Get("ia3"), new PeftSettings()),
        "bitfit" => (PeftRegistry.Get("bitfit"), new PeftSettings()),
        _ => throw new ArgumentException(name),
    };

    public static HeadOptions Head(TaskKind kind) => kind switch
    {
        TaskKind.Tokens => new HeadOptions(kind, 3, UseCrf: true),
        TaskKind.Regression => new HeadOptions(kind, 1),
        TaskKind.MultiLabel => new HeadOptions(kind, 3),
        _ => new HeadOptions(kind, 2),
    };

    /// <summary>
    /// The tiny base weights, drawn once. xUnit runs test classes in parallel and torch's global generator is
    /// shared, so two seeded <see cref="TestModels.TinyModel"/> calls can differ; every comparison here uses these.
    /// </summary>
    static readonly Lazy<Dictionary<string, Tensor>> BaseWeights = new(() =>
    {
        using var model = TestModels.TinyModel();
        return model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
    });

    /// <summary>A plain tiny encoder with the shared base weights, in eval mode.</summary>
    public static BertModel PlainModel()
    {
        var model = new BertModel(TestModels.TinyConfig);
        StateDictLoader.Load(model, BaseWeights.Value, "tiny base");
        model.eval();
        return model;
    }

    /// <summary>Builds the method's encoder, copies the tiny base weights into it (adapter keys optional), adds a head and freezes.</summary>
    public static TaskModel Build(IPeftMethod method, PeftSettings settings, HeadOptions head, int headSeed = 11)
    {
        manual_seed(headSeed);
        var bert = new BertModel(TestModels.TinyConfig, linears: method.Linears(settings, TestModels.TinyConfig));
        var unused = StateDictLoader.Load(bert, BaseWeights.Value, "tiny base", optional: key => key.Contains("lora_") || key.Contains("ia3_"));
        Assert.Empty(unused);
        var model = new TaskModel(bert, head);
        method.Freeze(model, settings);
        return model;
    }

    public static List<EncodedExample> ToyData(TaskKind kind, int count = 6) => TrainerTests.ToyData(kind, count, seed: 3);

    /// <summary>Logits in eval mode: (B, K), or (B, W, K) for tokens.</summary>
    public static Tensor Logits(TaskModel model, IReadOnlyList<EncodedExample> data)
    {
        model.eval();
        var (inputs, labels) = Collator.Collate(data, model.Head, padId: 0);
        using (inputs)
        using (labels)
        using (no_grad())
            return model.forward(inputs);
    }

    /// <summary>Moves every trainable parameter a little, so an adapter differs from its initial state without a training run.</summary>
    public static void Perturb(TaskModel model, int seed = 5)
    {
        manual_seed(seed);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (_, parameter) in model.named_parameters())
            if (parameter.requires_grad) parameter.add_(randn_like(parameter) * 0.1);
    }

    public static IReadOnlyDictionary<string, double> NoMetrics(IReadOnlyList<EncodedExample> data, Prediction[] predictions) =>
        new Dictionary<string, double>();
}
