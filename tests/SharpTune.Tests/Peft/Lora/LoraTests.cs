using SharpTune.Models.Bert;
using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using static SharpTune.Tests.Peft.PeftTestModels;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Lora;

public class LoraTests
{
    static readonly LoraMethod Method = new();
    static readonly PeftSettings Settings = new() { LoraR = 3, LoraAlpha = 6, LoraDropout = 0.1, LoraTargets = ["query", "value"] };

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void LoraLinear_computes_the_base_plus_the_scaled_low_rank_update()
    {
        manual_seed(1);
        using var layer = new LoraLinear(5, 7, new LoraOptions(3, 6, 0, ["x"], "none"));
        var p = layer.named_parameters().ToDictionary(n => n.name, n => n.parameter);
        Assert.Equal(["bias", "lora_A.weight", "lora_B.weight", "weight"], p.Keys.Order(StringComparer.Ordinal));
        Assert.Equal([3L, 5], p["lora_A.weight"].shape);
        Assert.Equal([7L, 3], p["lora_B.weight"].shape);
        Assert.True(p["lora_B.weight"].eq(0).all().item<bool>(), "B starts at zero");
        using (no_grad()) p["lora_B.weight"].normal_();
        using var x = randn(2, 4, 5);
        using var y = layer.forward(x);
        using var expected = x.matmul(p["weight"].t()) + p["bias"] + x.matmul(p["lora_A.weight"].t()).matmul(p["lora_B.weight"].t()) * 2.0;
        Tolerances.AssertClose(expected, y, Tolerances.DifferentKernels); // matmul + add against the layer's linear
    }

    [Fact]
    public void Over_a_bf16_base_the_adapter_keeps_the_narrow_input_and_its_gradients_are_the_same_bits()
    {
        // lora_A's product keeps the bf16 input, not its fp32 copy (WideningLinear): the output and every gradient must
        // equal, bit for bit, those of the plain graph that widens the input once and keeps the copy, written out here.
        manual_seed(3);
        using var layer = new LoraLinear(new LinearSite("x", 37, 29), new LoraOptions(4, 8, 0, ["x"], "none"));
        MixedDtype.HoldFrozenIn(layer, ScalarType.BFloat16, (name, _) => name.StartsWith("lora_", StringComparison.Ordinal));
        var p = layer.named_parameters().ToDictionary(n => n.name, n => n.parameter);
        using (no_grad()) p["lora_B.weight"].normal_();
        Assert.Equal(ScalarType.BFloat16, p["weight"].dtype);
        Assert.Equal(ScalarType.Float32, p["lora_A.weight"].dtype);
        layer.train();

        using var input = randn(3, 11, 37).to(ScalarType.BFloat16);
        using var seed = randn(3, 11, 29);
        (Tensor Out, Tensor[] Grads) Run(Func<Tensor, Tensor> forward)
        {
            foreach (var parameter in p.Values) parameter.grad = null;
            var x = input.detach().requires_grad_(true);
            var y = forward(x);
            (y.to(ScalarType.Float32) * seed).sum().backward();
            return (y.detach().clone(), [x.grad!.clone(), p["lora_A.weight"].grad!.clone(), p["lora_B.weight"].grad!.clone()]);
        }
        var (ours, ourGrads) = Run(layer.forward);
        var (plain, plainGrads) = Run(x =>
        {
            var result = nn.functional.linear(x, p["weight"], p["bias"]);
            var update = nn.functional.linear(nn.functional.linear(x.to(ScalarType.Float32), p["lora_A.weight"]) * layer.Scaling, p["lora_B.weight"]);
            return result.add_(update);
        });
        Assert.True(ours.eq(plain).all().item<bool>(), "outputs differ");
        string[] names = ["the input's", "lora_A's", "lora_B's"];
        for (int i = 0; i < 3; i++) Assert.True(ourGrads[i].eq(plainGrads[i]).all().item<bool>(), $"{names[i]} gradients differ");
        Assert.True(ourGrads[1].abs().sum().item<float>() > 0, "lora_A got no gradient");
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Merged_equals_unmerged_and_unmerge_restores_the_weights()
    {
        using var model = Build(Method, Settings, Head(TaskKind.SingleLabel));
        Perturb(model);
        var data = ToyData(TaskKind.SingleLabel);
        using var unmerged = Logits(model, data);
        var weights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        var layers = model.named_modules().Select(m => m.module).OfType<LoraLinear>().ToList();
        Assert.Equal(4, layers.Count); // query and value in two layers

        foreach (var layer in layers) layer.Merge();
        Assert.True(layers.All(l => l.IsMerged));
        using var merged = Logits(model, data);
        // W + s B A in one product against W and the low-rank path apart, through the network.
        Tolerances.AssertClose(unmerged, merged, Tolerances.DifferentKernelsThroughNetwork, "merged");
        Assert.False(model.state_dict()["bert.encoder.layer.0.attention.self.query.weight"].eq(weights["bert.encoder.layer.0.attention.self.query.weight"]).all().item<bool>());

        foreach (var layer in layers) layer.Unmerge();
        foreach (var (key, value) in model.state_dict())
            Tolerances.AssertClose(weights[key], value, Tolerances.Rounding, $"{key} not restored"); // W + d - d
        using var again = Logits(model, data);
        Tolerances.AssertClose(unmerged, again, Tolerances.DifferentKernels, "unmerged again"); // weights an ulp off W
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Merged_export_is_a_plain_Hugging_Face_encoder_with_the_same_outputs()
    {
        using var model = Build(Method, Settings with { LoraBias = "all" }, Head(TaskKind.SingleLabel));
        Perturb(model);
        model.eval();
        using var plain = MergedExport.ToPlainModel(model.Encoder);
        using var reference = PlainModel();
        Assert.Equal(reference.state_dict().Keys.Order(StringComparer.Ordinal), plain.state_dict().Keys.Order(StringComparer.Ordinal));
        var copies = MergedExport.PlainStateDict(model.Encoder);
        Assert.Equal(reference.state_dict().Keys.Order(StringComparer.Ordinal), copies.Keys.Order(StringComparer.Ordinal));
        Assert.True(copies["encoder.layer.1.attention.self.value.weight"].eq(plain.state_dict()["encoder.layer.1.attention.self.value.weight"]).all().item<bool>());
        foreach (var copy in copies.Values) copy.Dispose(); // the caller owns every tensor; the model must stay usable

        using var ids = tensor(new long[] { 2, 15, 40, 98, 7, 3 }, [1, 6]);
        using var expected = model.Encoder.forward(ids);
        using var actual = plain.forward(ids);
        Tolerances.AssertClose(expected.LastHiddenState, actual.LastHiddenState, Tolerances.DifferentKernelsThroughNetwork, "merged export");
        Tolerances.AssertClose(expected.PooledOutput!, actual.PooledOutput!, Tolerances.DifferentKernelsThroughNetwork, "merged export, pooled");

        using var temp = new TestModels.TempFolder();
        var vocab = System.Text.Encoding.UTF8.GetBytes(string.Join("\n", Enumerable.Range(0, 99).Select(i => $"w{i}")) + "\n");
        BertFolder.Save(temp.Path, plain, vocab, lowerCase: true);
        using var reloaded = PretrainedEncoder.Load(temp.Path);
        using var fromDisk = reloaded.Model.forward(ids);
        Tolerances.AssertClose(actual.LastHiddenState, fromDisk.LastHiddenState, Tolerances.Exact, "merged export reloaded from disk");
    }

    [Fact]
    public void Adapter_keys_and_config_are_PEFTs()
    {
        using var temp = new TestModels.TempFolder();
        using var model = Build(Method, Settings, Head(TaskKind.SingleLabel));
        Method.SaveAdapter(temp.Path, model, Settings, "sentence-transformers/all-MiniLM-L6-v2");

        var tensors = SafeTensors.Load(temp.File("adapter_model.safetensors"));
        var expectedKeys = new List<string> { "base_model.model.classifier.bias", "base_model.model.classifier.weight" };
        foreach (int layer in new[] { 0, 1 })
            foreach (string module in new[] { "query", "value" })
                foreach (string part in new[] { "lora_A", "lora_B" })
                    expectedKeys.Add($"base_model.model.bert.encoder.layer.{layer}.attention.self.{module}.{part}.weight");
        Assert.Equal(expectedKeys.Order(StringComparer.Ordinal), tensors.Keys.Order(StringComparer.Ordinal));
        Assert.Equal([3L, 32], tensors["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"].shape);
        Assert.Equal([32L, 3], tensors["base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight"].shape);
        Assert.Equal([2L, 32], tensors["base_model.model.classifier.weight"].shape);
        foreach (var t in tensors.Values) t.Dispose();

        string text = File.ReadAllText(temp.File("adapter_config.json"));
        var expected = JsonNode.Parse("""
            {
              "base_model_name_or_path": "sentence-transformers/all-MiniLM-L6-v2",
              "bias": "none",
              "fan_in_fan_out": false,
              "inference_mode": true,
              "init_lora_weights": true,
              "layers_pattern": null,
              "layers_to_transform": null,
              "lora_alpha": 6,
              "lora_dropout": 0.1,
              "modules_to_save": ["classifier"],
              "peft_type": "LORA",
              "r": 3,
              "revision": null,
              "target_modules": ["query", "value"],
              "task_type": "SEQ_CLS"
            }
            """);
        Assert.True(JsonNode.DeepEquals(expected, JsonNode.Parse(text)), text);
        var keys = JsonNode.Parse(text)!.AsObject().Select(kv => kv.Key).ToList();
        Assert.Equal(keys.Order(StringComparer.Ordinal), keys); // sorted, as PEFT writes it
    }

    [Theory]
    [InlineData("lora_only", "base_model.model.bert.encoder.layer.0.attention.self.query.base_layer.bias", "base_model.model.bert.encoder.layer.0.attention.self.key.bias")]
    [InlineData("all", "base_model.model.bert.embeddings.LayerNorm.bias", "base_model.model.bert.encoder.layer.0.attention.self.query.bias")]
    public void Biases_are_saved_under_PEFTs_keys(string bias, string present, string absent)
    {
        using var temp = new TestModels.TempFolder();
        var settings = Settings with { LoraBias = bias };
        using var model = Build(Method, settings, Head(TaskKind.Tokens));
        Method.SaveAdapter(temp.Path, model, settings, "tiny");
        var keys = SafeTensors.ReadHeader(temp.File("adapter_model.safetensors")).Entries.Select(e => e.Name).ToList();
        Assert.Contains(present, keys);
        Assert.DoesNotContain(absent, keys);
        Assert.Contains("base_model.model.bert.encoder.layer.1.attention.self.value.base_layer.bias", keys);
        Assert.Contains("base_model.model.crf.transitions", keys);
        // all: 8 biases per layer (q, k, v, attention.output.dense and its LayerNorm, intermediate, output.dense and
        // its LayerNorm) in 2 layers, the embeddings' LayerNorm and the pooler; lora_only: query and value in 2 layers.
        Assert.Equal(bias == "all" ? 18 : 4, keys.Count(k => k.StartsWith("base_model.model.bert.") && k.EndsWith(".bias")));
    }

    [Theory]
    [InlineData("r", 0, "--lora-r")]
    [InlineData("alpha", 0, "--lora-alpha")]
    [InlineData("dropout", 1, "--lora-dropout")]
    public void Bad_numbers_are_argument_errors_naming_the_option(string which, double value, string option)
    {
        var settings = which switch
        {
            "r" => Settings with { LoraR = (int)value },
            "alpha" => Settings with { LoraAlpha = value },
            _ => Settings with { LoraDropout = value },
        };
        var error = Assert.Throws<ArgumentException>(() => Method.Validate(settings, TestModels.TinyConfig));
        Assert.Contains(option, error.Message);
        Assert.Throws<ArgumentException>(() => Method.Linears(settings, TestModels.TinyConfig));
    }

    [Fact]
    public void Unknown_targets_empty_targets_and_bad_bias_are_named()
    {
        var unknown = Assert.Throws<ArgumentException>(() => Method.Validate(Settings with { LoraTargets = ["query", "querry", "q_proj"] }, TestModels.TinyConfig));
        Assert.Contains("--lora-targets", unknown.Message);
        Assert.Contains("'querry'", unknown.Message);
        Assert.Contains("'q_proj'", unknown.Message);
        Assert.DoesNotContain("'query'", unknown.Message);
        Assert.Contains("--lora-targets", Assert.Throws<ArgumentException>(() => Method.Validate(Settings with { LoraTargets = [] }, TestModels.TinyConfig)).Message);
        Assert.Contains("--lora-bias", Assert.Throws<ArgumentException>(() => Method.Validate(Settings with { LoraBias = "some" }, TestModels.TinyConfig)).Message);
        Method.Validate(Settings with { LoraTargets = ["dense", "output.dense", "encoder.layer.1.attention.self.key"] }, TestModels.TinyConfig);
    }
}
