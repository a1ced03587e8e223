using SharpTune.Heads;
using SharpTune.Peft;
using SharpTune.Training;
using static SharpTune.Tests.Peft.PeftTestModels;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>The matrix every Linear-wrapping method runs through: only adapter and head train, save/load round-trips, an untrained adapter is the identity.</summary>
public class LinearMethodMatrixTests
{
    public static TheoryData<string> Cases => new() { "lora", "lora-bias-all", "lora-bias-lora_only", "ia3", "bitfit" };

    /// <summary>Which parameters each case should train, besides the head.</summary>
    static bool ShouldTrain(string name, string parameter) => name switch
    {
        "lora" => parameter.Contains(".lora_A.") || parameter.Contains(".lora_B."),
        "lora-bias-all" => parameter.Contains(".lora_") || parameter.StartsWith("bert.") && parameter.EndsWith(".bias"),
        "lora-bias-lora_only" => parameter.Contains(".lora_") || parameter.EndsWith("self.key.bias") || parameter == "bert.pooler.dense.bias",
        "ia3" => parameter.EndsWith(".ia3_l"),
        "bitfit" => parameter.StartsWith("bert.") && parameter.EndsWith(".bias"),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Training_changes_only_the_adapter_and_the_head(string name)
    {
        var (method, settings) = Case(name);
        using var model = Build(method, settings, Head(TaskKind.SingleLabel));
        foreach (var (parameter, value) in model.named_parameters())
            Assert.True(value.requires_grad == (ShouldTrain(name, parameter) || parameter.StartsWith("classifier.")), $"{name}: {parameter} requires_grad {value.requires_grad}");

        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var options = new TrainingOptions { Epochs = 2, BatchSize = 8, LearningRate = 1e-2, WarmupRatio = 0, Schedule = "constant" };
        new Trainer(model, options, 0, NoMetrics).Train(ToyData(TaskKind.SingleLabel, 24), null);

        foreach (var (parameter, value) in model.named_parameters())
        {
            bool same = value.eq(before[parameter]).all().item<bool>();
            if (value.requires_grad) Assert.False(same, $"{name}: trainable {parameter} did not change");
            else Assert.True(same, $"{name}: frozen {parameter} changed");
        }
        foreach (var tensor in before.Values) tensor.Dispose();
    }

    [Theory]
    [MemberData(nameof(Cases))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void An_untrained_adapter_leaves_the_base_model_unchanged(string name)
    {
        var (method, settings) = Case(name);
        using var model = Build(method, settings, Head(TaskKind.SingleLabel));
        using var plain = PlainModel();
        model.eval();
        using var ids = tensor(new long[] { 2, 15, 40, 98, 7, 3, 2, 61, 5, 33, 3, 0 }, [2, 6]);
        using var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 }, [2, 6]);
        using var expected = plain.forward(ids, mask);
        using var actual = model.Encoder.forward(ids, mask);
        // An untrained adapter adds exactly zero (LoRA's B is zero) or scales by exactly one (IA3), after the same
        // Linear kernels the plain model runs: bit-identical.
        Tolerances.AssertClose(expected.LastHiddenState, actual.LastHiddenState, Tolerances.Exact, $"{name}: hidden states");
        Tolerances.AssertClose(expected.PooledOutput!, actual.PooledOutput!, Tolerances.Exact, $"{name}: pooled output");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Saved_adapter_loads_into_a_fresh_model_with_identical_logits(string name)
    {
        var (method, settings) = Case(name);
        foreach (var kind in new[] { TaskKind.SingleLabel, TaskKind.Tokens })
        {
            using var temp = new TestModels.TempFolder();
            using var trained = Build(method, settings, Head(kind), headSeed: 11);
            Perturb(trained);
            method.SaveAdapter(temp.Path, trained, settings, "tiny-bert");

            var reread = method.ReadSettings(AdapterFiles.ReadConfig(temp.Path), temp.File(AdapterFiles.ConfigFile));
            using var fresh = Build(method, reread, Head(kind), headSeed: 99);
            method.LoadAdapter(temp.Path, fresh);

            var data = ToyData(kind);
            using var expected = Logits(trained, data);
            using var actual = Logits(fresh, data);
            Tolerances.AssertClose(expected, actual, Tolerances.Exact, $"{name} {kind}: logits");
            var trainedState = trained.state_dict();
            foreach (var (key, value) in fresh.state_dict())
                Assert.True(value.eq(trainedState[key]).all().item<bool>(), $"{name} {kind}: {key} differs after loading");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_parameter_is_in_the_state_dict_and_base_keys_are_Hugging_Faces(string name)
    {
        var (method, settings) = Case(name);
        using var model = Build(method, settings, Head(TaskKind.SingleLabel));
        var state = model.state_dict();
        foreach (var (parameter, _) in model.named_parameters()) Assert.Contains(parameter, state.Keys);
        if (method.Name != "bitfit") Assert.Contains(state.Keys, AdapterTensors.IsAdapterKey);

        using var plain = PlainModel();
        var baseKeys = model.Encoder.state_dict().Keys.Where(k => !AdapterTensors.IsAdapterKey(k)).Order(StringComparer.Ordinal);
        Assert.Equal(plain.state_dict().Keys.Order(StringComparer.Ordinal), baseKeys);
    }

    [Fact]
    public void The_methods_are_registered_with_their_types_and_rates()
    {
        Assert.Equal("LORA", PeftRegistry.Get("lora").PeftType);
        Assert.Equal("IA3", PeftRegistry.Get("IA3").PeftType);
        Assert.Null(PeftRegistry.Get("bitfit").PeftType);
        Assert.Equal(5e-4, PeftRegistry.Get("lora").DefaultLearningRate);
        Assert.Throws<InvalidOperationException>(() => PeftRegistry.Register(new SharpTune.Peft.Lora.LoraMethod()));
    }

    [Fact]
    public void Target_matching_follows_PEFT_suffix_rules()
    {
        Assert.True(LinearTargets.Matches(TestModels.TinyConfig, "encoder.layer.3.attention.self.query", "query"));
        Assert.True(LinearTargets.Matches(TestModels.TinyConfig, "encoder.layer.3.attention.self.query", "self.query"));
        Assert.True(LinearTargets.Matches(TestModels.TinyConfig, "encoder.layer.3.attention.self.query", "encoder.layer.3.attention.self.query"));
        Assert.True(LinearTargets.Matches(TestModels.TinyConfig, "encoder.layer.3.attention.self.query", "bert.encoder.layer.3.attention.self.query"));
        Assert.False(LinearTargets.Matches(TestModels.TinyConfig, "encoder.layer.3.attention.self.query", "uery"));
        Assert.True(LinearTargets.Matches(TestModels.TinyConfig, "encoder.layer.3.attention.output.dense", "output.dense"));
        Assert.True(LinearTargets.Matches(TestModels.TinyConfig, "encoder.layer.3.output.dense", "output.dense"));
        Assert.False(LinearTargets.Matches(TestModels.TinyConfig, "encoder.layer.3.intermediate.dense", "output.dense"));
        Assert.True(LinearTargets.Matches(TestModels.TinyConfig, "encoder.layer.3.output.dense", "layer.3.output.dense"));
        Assert.False(LinearTargets.Matches(TestModels.TinyConfig, "encoder.layer.13.output.dense", "3.output.dense"));
    }

    [Fact]
    public void The_listed_Linear_paths_are_the_ones_the_encoder_builds()
    {
        var built = new List<string>();
        using var model = new SharpTune.Models.Bert.BertModel(TestModels.TinyConfig, linears: site =>
        {
            built.Add(site.Path);
            return nn.Linear(site.InFeatures, site.OutFeatures);
        });
        Assert.Equal(SharpTune.Models.Bert.BertLinears.Paths(TestModels.TinyConfig), built);
        Assert.Equal(13, built.Count);
    }
}
