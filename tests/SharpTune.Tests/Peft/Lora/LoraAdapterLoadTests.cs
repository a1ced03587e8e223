using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using static SharpTune.Tests.Peft.PeftTestModels;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Lora;

public class LoraAdapterLoadTests
{
    static readonly LoraMethod Method = new();
    static readonly PeftSettings Settings = new() { LoraR = 3, LoraAlpha = 6, LoraTargets = ["query", "value"] };
    const string QueryA = "base_model.model.bert.encoder.layer.1.attention.self.query.lora_A.weight";

    static void Save(TestModels.TempFolder temp, PeftSettings settings)
    {
        using var model = Build(Method, settings, Head(TaskKind.SingleLabel));
        Method.SaveAdapter(temp.Path, model, settings, "tiny");
    }

    static void RewriteWeights(TestModels.TempFolder temp, Action<Dictionary<string, Tensor>> change)
    {
        var tensors = SafeTensors.Load(temp.File(AdapterFiles.WeightsFile));
        change(tensors);
        SafeTensors.Save(temp.File(AdapterFiles.WeightsFile), tensors);
        foreach (var t in tensors.Values) t.Dispose();
    }

    [Fact]
    public void A_missing_tensor_names_the_file_and_the_key()
    {
        using var temp = new TestModels.TempFolder();
        Save(temp, Settings);
        RewriteWeights(temp, t => t.Remove(QueryA));
        using var model = Build(Method, Settings, Head(TaskKind.SingleLabel));
        var error = Assert.Throws<InvalidDataException>(() => Method.LoadAdapter(temp.Path, model));
        Assert.Contains(AdapterFiles.WeightsFile, error.Message);
        Assert.Contains(QueryA, error.Message);
    }

    [Fact]
    public void A_misshapen_tensor_names_the_key_and_both_shapes()
    {
        using var temp = new TestModels.TempFolder();
        Save(temp, Settings);
        RewriteWeights(temp, t => t[QueryA] = zeros(4, 32));
        using var model = Build(Method, Settings, Head(TaskKind.SingleLabel));
        var error = Assert.Throws<InvalidDataException>(() => Method.LoadAdapter(temp.Path, model));
        Assert.Contains(QueryA, error.Message);
        Assert.Contains("[4, 32]", error.Message);
        Assert.Contains("[3, 32]", error.Message);
    }

    [Fact]
    public void An_adapter_for_other_targets_or_another_scaling_is_refused()
    {
        using var temp = new TestModels.TempFolder();
        Save(temp, Settings with { LoraTargets = ["query", "value", "key"] });
        using (var model = Build(Method, Settings, Head(TaskKind.SingleLabel)))
            Assert.Contains("self.key.lora_A.weight", Assert.Throws<InvalidDataException>(() => Method.LoadAdapter(temp.Path, model)).Message);
        using (var model = Build(Method, Settings with { LoraTargets = ["query", "value", "key"], LoraAlpha = 9 }, Head(TaskKind.SingleLabel)))
            Assert.Contains("lora_alpha", Assert.Throws<InvalidDataException>(() => Method.LoadAdapter(temp.Path, model)).Message);
        using (var plainModel = Build(PeftRegistry.Get("bitfit"), new PeftSettings(), Head(TaskKind.SingleLabel)))
            Assert.Throws<ArgumentException>(() => Method.LoadAdapter(temp.Path, plainModel));
    }

    /// <summary>A config as PEFT 0.13 writes it for BertForSequenceClassification, extra fields and all.</summary>
    const string PeftWritten = """
        {
          "alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": "bert-base-uncased", "bias": "lora_only",
          "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true, "layer_replication": null,
          "layers_pattern": null, "layers_to_transform": null, "loftq_config": {}, "lora_alpha": 16, "lora_dropout": 0.1,
          "megatron_config": null, "megatron_core": "megatron.core", "modules_to_save": ["classifier", "score"],
          "peft_type": "LORA", "r": 8, "rank_pattern": {}, "revision": null, "target_modules": ["value", "query"],
          "task_type": "SEQ_CLS", "use_dora": false, "use_rslora": false
        }
        """;

    [Fact]
    public void A_config_written_by_PEFT_reads_back_and_unsupported_features_are_named()
    {
        var settings = Method.ReadSettings(JsonNode.Parse(PeftWritten)!.AsObject(), "peft/adapter_config.json");
        Assert.Equal(8, settings.LoraR);
        Assert.Equal(16, settings.LoraAlpha);
        Assert.Equal(0.1, settings.LoraDropout);
        Assert.Equal(["value", "query"], settings.LoraTargets);
        Assert.Equal("lora_only", settings.LoraBias);

        var minimal = Method.ReadSettings(JsonNode.Parse("""{"peft_type": "LORA"}""")!.AsObject(), "min.json");
        Assert.Equal((8, 8.0, 0.0, "none"), (minimal.LoraR, minimal.LoraAlpha, minimal.LoraDropout, minimal.LoraBias)); // PEFT's defaults
        Assert.Null(minimal.LoraTargets); // PEFT then takes its table's targets for the model it is loaded into
        Assert.Equal(["query", "value"], SharpTune.Peft.Lora.LoraOptions.From(minimal, TestModels.TinyConfig).Targets);

        Assert.False(settings.LoraDora || settings.LoraRsLora);
        Assert.Equal("kaiming", settings.LoraInit);
        foreach (var (key, value) in new[] { ("use_dora", "\"yes\""), ("init_lora_weights", "\"loftq\""), ("layers_to_transform", "[0]"), ("target_modules", "\".*query\""), ("r", "\"eight\"") })
        {
            var config = JsonNode.Parse(PeftWritten)!.AsObject();
            config[key] = JsonNode.Parse(value);
            var error = Assert.Throws<InvalidDataException>(() => Method.ReadSettings(config, "peft/adapter_config.json"));
            Assert.Contains(key, error.Message);
            Assert.Contains("peft/adapter_config.json", error.Message);
        }
        var ia3 = JsonNode.Parse(PeftWritten)!.AsObject();
        ia3["peft_type"] = "IA3";
        Assert.Contains("IA3", Assert.Throws<InvalidDataException>(() => Method.ReadSettings(ia3, "x.json")).Message);
    }

    [Fact]
    public void Bias_saved_by_older_PEFT_without_base_layer_still_loads()
    {
        using var temp = new TestModels.TempFolder();
        var settings = Settings with { LoraBias = "lora_only" };
        using var trained = Build(Method, settings, Head(TaskKind.SingleLabel));
        Perturb(trained);
        Method.SaveAdapter(temp.Path, trained, settings, "tiny");
        RewriteWeights(temp, t =>
        {
            foreach (var key in t.Keys.Where(k => k.EndsWith(".base_layer.bias")).ToList())
            {
                t[key.Replace(".base_layer.bias", ".bias")] = t[key];
                t.Remove(key);
            }
        });
        using var fresh = Build(Method, settings, Head(TaskKind.SingleLabel), headSeed: 3);
        Method.LoadAdapter(temp.Path, fresh);
        const string bias = "bert.encoder.layer.0.attention.self.query.bias";
        Assert.True(fresh.state_dict()[bias].eq(trained.state_dict()[bias]).all().item<bool>());
    }
}
