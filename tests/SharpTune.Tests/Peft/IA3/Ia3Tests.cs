using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Peft;
using SharpTune.Peft.IA3;
using static SharpTune.Tests.Peft.PeftTestModels;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.IA3;

public class Ia3Tests
{
    static readonly Ia3Method Method = new();
    static readonly PeftSettings Defaults = new();

    [Fact]
    public void Default_targets_wrap_key_value_and_both_output_dense_layers_as_PEFT_does()
    {
        // PEFT's BERT defaults: target_modules key, value, output.dense; feedforward_modules output.dense.
        // "output.dense" ends both attention.output.dense and the FFN's output.dense, so both are wrapped and
        // both scale their input; key and value scale their output.
        using var model = Build(Method, Defaults, Head(TaskKind.SingleLabel));
        var vectors = model.named_parameters().Where(p => p.name.EndsWith(".ia3_l")).ToDictionary(p => p.name, p => p.parameter.shape);
        var expected = new Dictionary<string, long[]>();
        foreach (int layer in new[] { 0, 1 })
        {
            expected[$"bert.encoder.layer.{layer}.attention.self.key.ia3_l"] = [32, 1];
            expected[$"bert.encoder.layer.{layer}.attention.self.value.ia3_l"] = [32, 1];
            expected[$"bert.encoder.layer.{layer}.attention.output.dense.ia3_l"] = [1, 32];
            expected[$"bert.encoder.layer.{layer}.output.dense.ia3_l"] = [1, 37];
        }
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), vectors.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, shape) in expected) Assert.Equal(shape, vectors[name]);
        Assert.True(model.named_parameters().Where(p => p.name.EndsWith(".ia3_l")).All(p => p.parameter.eq(1).all().item<bool>()), "vectors start at one");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Ia3Linear_scales_the_output_or_the_feed_forward_input(bool feedForward)
    {
        manual_seed(2);
        using var layer = new Ia3Linear(5, 7, feedForward);
        var p = layer.named_parameters().ToDictionary(n => n.name, n => n.parameter);
        Assert.Equal(["bias", "ia3_l", "weight"], p.Keys.Order(StringComparer.Ordinal));
        using (no_grad()) p["ia3_l"].uniform_(0.5, 1.5);
        using var x = randn(3, 5);
        using var y = layer.forward(x);
        using var expected = feedForward
            ? (x * p["ia3_l"]).matmul(p["weight"].t()) + p["bias"] // l (1, 5) scales the 5 inputs
            : (x.matmul(p["weight"].t()) + p["bias"]) * p["ia3_l"].t(); // l (7, 1) scales the 7 outputs
        Tolerances.AssertClose(expected, y, Tolerances.DifferentKernels, "forward"); // matmul + add against the layer's linear

        layer.Merge();
        using var merged = layer.forward(x);
        Tolerances.AssertClose(expected, merged, Tolerances.DifferentKernels, "merged"); // l folded into W
        layer.Unmerge();
        using var again = layer.forward(x);
        Tolerances.AssertClose(expected, again, Tolerances.DifferentKernels, "unmerged");
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Merged_model_equals_unmerged_and_exports_as_a_plain_encoder()
    {
        using var model = Build(Method, Defaults, Head(TaskKind.SingleLabel));
        Perturb(model);
        var data = ToyData(TaskKind.SingleLabel);
        using var unmerged = Logits(model, data);
        var weights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        var layers = model.named_modules().Select(m => m.module).OfType<IMergeableLinear>().ToList();
        Assert.Equal(8, layers.Count);
        foreach (var layer in layers) layer.Merge();
        using var merged = Logits(model, data);
        Tolerances.AssertClose(unmerged, merged, Tolerances.DifferentKernelsThroughNetwork, "merged");
        foreach (var layer in layers) layer.Unmerge();
        foreach (var (key, value) in model.state_dict())
            Tolerances.AssertClose(weights[key], value, Tolerances.Rounding, $"{key} not restored"); // W l / l

        using var plain = MergedExport.ToPlainModel(model.Encoder);
        using var ids = tensor(new long[] { 2, 15, 40, 98, 7, 3 }, [1, 6]);
        using var expected = model.Encoder.forward(ids);
        using var actual = plain.forward(ids);
        Tolerances.AssertClose(expected.LastHiddenState, actual.LastHiddenState, Tolerances.DifferentKernelsThroughNetwork, "merged export");
    }

    [Fact]
    public void Adapter_keys_and_config_are_PEFTs()
    {
        using var temp = new TestModels.TempFolder();
        using var model = Build(Method, Defaults, Head(TaskKind.Tokens));
        Method.SaveAdapter(temp.Path, model, Defaults, "bert-base-uncased");
        var keys = SafeTensors.ReadHeader(temp.File(AdapterFiles.WeightsFile)).Entries.ToDictionary(e => e.Name, e => e.Shape);
        Assert.Equal([32L, 1], keys["base_model.model.bert.encoder.layer.0.attention.self.key.ia3_l"]);
        Assert.Equal([1L, 37], keys["base_model.model.bert.encoder.layer.1.output.dense.ia3_l"]);
        Assert.Equal(8, keys.Keys.Count(k => k.EndsWith(".ia3_l")));
        Assert.Contains("base_model.model.classifier.weight", keys.Keys);
        Assert.Contains("base_model.model.crf.transitions", keys.Keys);

        var expected = JsonNode.Parse("""
            {
              "base_model_name_or_path": "bert-base-uncased",
              "fan_in_fan_out": false,
              "feedforward_modules": ["output.dense"],
              "inference_mode": true,
              "init_ia3_weights": true,
              "modules_to_save": ["classifier"],
              "peft_type": "IA3",
              "revision": null,
              "target_modules": ["key", "value", "output.dense"],
              "task_type": "TOKEN_CLS"
            }
            """);
        string text = File.ReadAllText(temp.File(AdapterFiles.ConfigFile));
        Assert.True(JsonNode.DeepEquals(expected, JsonNode.Parse(text)), text);
    }

    [Fact]
    public void A_config_written_by_PEFT_reads_back()
    {
        var config = JsonNode.Parse("""
            {"auto_mapping": null, "base_model_name_or_path": "bert-base-uncased", "exclude_modules": null, "fan_in_fan_out": false,
             "feedforward_modules": ["output.dense"], "inference_mode": true, "init_ia3_weights": true,
             "modules_to_save": ["classifier", "score"], "peft_type": "IA3", "revision": null,
             "target_modules": ["value", "output.dense", "key"], "task_type": "SEQ_CLS"}
            """)!.AsObject();
        var settings = Method.ReadSettings(config, "peft/adapter_config.json");
        Assert.Equal(["value", "output.dense", "key"], settings.Ia3Targets);
        Assert.Equal(["output.dense"], settings.Ia3FeedForward);
        config["feedforward_modules"] = "output\\.dense";
        Assert.Contains("feedforward_modules", Assert.Throws<InvalidDataException>(() => Method.ReadSettings(config, "peft/adapter_config.json")).Message);
    }

    [Fact]
    public void Bad_targets_are_argument_errors_naming_the_option()
    {
        var unknown = Assert.Throws<ArgumentException>(() => Method.Validate(Defaults with { Ia3Targets = ["key", "k_proj"] }, TestModels.TinyConfig));
        Assert.Contains("--ia3-targets", unknown.Message);
        Assert.Contains("'k_proj'", unknown.Message);
        var outside = Assert.Throws<ArgumentException>(() => Method.Validate(Defaults with { Ia3Targets = ["key", "value"], Ia3FeedForward = ["output.dense"] }, TestModels.TinyConfig));
        Assert.Contains("--ia3-feedforward", outside.Message);
        Assert.Contains("'output.dense'", outside.Message);
        Assert.Throws<ArgumentException>(() => Method.Linears(Defaults with { Ia3Targets = [] }, TestModels.TinyConfig));
        // Targets alone: the family's feed-forward modules among them count (PEFT fills feedforward_modules from its table).
        Assert.Empty(Ia3Options.From(Defaults with { Ia3Targets = ["key", "value"] }, TestModels.TinyConfig).FeedForward);
    }

    [Fact]
    public void An_adapter_whose_feed_forward_split_differs_is_refused_by_shape()
    {
        using var temp = new TestModels.TempFolder();
        using (var model = Build(Method, Defaults, Head(TaskKind.SingleLabel)))
            Method.SaveAdapter(temp.Path, model, Defaults, "tiny");
        var attentionOnly = Defaults with { Ia3FeedForward = ["intermediate.dense"], Ia3Targets = ["key", "value", "output.dense", "intermediate.dense"] };
        using var other = Build(Method, attentionOnly, Head(TaskKind.SingleLabel));
        var error = Assert.Throws<InvalidDataException>(() => Method.LoadAdapter(temp.Path, other));
        Assert.Contains("ia3_l", error.Message);
        Assert.Contains(AdapterFiles.WeightsFile, error.Message);
    }
}
