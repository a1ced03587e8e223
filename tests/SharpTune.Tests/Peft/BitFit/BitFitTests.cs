using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Peft;
using SharpTune.Peft.BitFit;
using static SharpTune.Tests.Peft.PeftTestModels;

namespace SharpTune.Tests.Peft.BitFit;

public class BitFitTests
{
    static readonly BitFitMethod Method = new();

    [Fact]
    public void Every_encoder_bias_and_the_head_train()
    {
        using var model = Build(Method, new PeftSettings(), Head(TaskKind.SingleLabel));
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        // 8 biases per layer (q, k, v, attention.output.dense, its LayerNorm, intermediate, output.dense, its LayerNorm) x 2, embeddings LayerNorm, pooler, head 2.
        Assert.Equal(16 + 1 + 1 + 2, trainable.Count);
        Assert.Contains("bert.embeddings.LayerNorm.bias", trainable);
        Assert.Contains("bert.encoder.layer.1.intermediate.dense.bias", trainable);
        Assert.DoesNotContain("bert.encoder.layer.1.intermediate.dense.weight", trainable);
        Assert.Null(Method.Linears(new PeftSettings(), TestModels.TinyConfig));
    }

    [Fact]
    public void The_adapter_folder_holds_the_biases_under_PEFT_style_keys_and_a_BITFIT_config()
    {
        using var temp = new TestModels.TempFolder();
        using var model = Build(Method, new PeftSettings(), Head(TaskKind.Regression));
        Method.SaveAdapter(temp.Path, model, new PeftSettings(), "minilm");
        var keys = SafeTensors.ReadHeader(temp.File(AdapterFiles.WeightsFile)).Entries.Select(e => e.Name).ToList();
        Assert.Contains("base_model.model.bert.encoder.layer.0.attention.self.query.bias", keys);
        Assert.Contains("base_model.model.bert.pooler.dense.bias", keys);
        Assert.Contains("base_model.model.classifier.weight", keys);
        Assert.Equal(18 + 2, keys.Count);

        var expected = JsonNode.Parse("""
            {
              "base_model_name_or_path": "minilm",
              "bias": "all",
              "inference_mode": true,
              "modules_to_save": ["classifier"],
              "peft_type": "BITFIT",
              "revision": null,
              "task_type": "SEQ_CLS"
            }
            """);
        string text = File.ReadAllText(temp.File(AdapterFiles.ConfigFile));
        Assert.True(JsonNode.DeepEquals(expected, JsonNode.Parse(text)), text);
    }

    [Fact]
    public void A_missing_bias_or_a_foreign_folder_is_named()
    {
        using var temp = new TestModels.TempFolder();
        using var model = Build(Method, new PeftSettings(), Head(TaskKind.SingleLabel));
        Method.SaveAdapter(temp.Path, model, new PeftSettings(), "tiny");
        var tensors = SafeTensors.Load(temp.File(AdapterFiles.WeightsFile));
        tensors.Remove("base_model.model.bert.encoder.layer.1.output.LayerNorm.bias");
        SafeTensors.Save(temp.File(AdapterFiles.WeightsFile), tensors);
        var error = Assert.Throws<InvalidDataException>(() => Method.LoadAdapter(temp.Path, model));
        Assert.Contains("base_model.model.bert.encoder.layer.1.output.LayerNorm.bias", error.Message);

        File.WriteAllText(temp.File(AdapterFiles.ConfigFile), """{"peft_type": "LORA"}""");
        Assert.Contains("BITFIT", Assert.Throws<InvalidDataException>(() => Method.LoadAdapter(temp.Path, model)).Message);
    }
}
