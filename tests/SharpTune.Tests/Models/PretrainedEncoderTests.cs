using SharpTune.Models.Bert;
using SharpTune.Checkpoints;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

public class PretrainedEncoderTests
{
    static readonly byte[] TinyVocab = System.Text.Encoding.UTF8.GetBytes(
        string.Join("\n", new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(Enumerable.Range(0, 94).Select(i => $"w{i}"))) + "\n");

    [Fact]
    public void A_saved_folder_loads_back_with_identical_weights_and_outputs()
    {
        using var temp = new TestModels.TempFolder();
        using var model = TestModels.TinyModel(seed: 3);
        BertFolder.Save(temp.Path, model, TinyVocab, lowerCase: true);
        foreach (var file in new[] { "config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json" })
            Assert.True(File.Exists(temp.File(file)), file);

        using var loaded = PretrainedEncoder.Load(temp.Path);
        Assert.Equal(WeightOrigin.HuggingFaceFolder, loaded.Origin);
        Assert.Equal(model.Config.HiddenSize, loaded.Config.HiddenSize);
        var expected = model.state_dict();
        foreach (var (key, value) in loaded.Model.state_dict())
            Assert.True(value.eq(expected[key]).all().item<bool>(), key);

        using var ids = randint(1, 99, [2, 6], dtype: ScalarType.Int64);
        using var a = model.forward(ids);
        using var b = loaded.Model.forward(ids);
        Assert.True(a.LastHiddenState.eq(b.LastHiddenState).all().item<bool>());
    }

    [Fact]
    public void A_task_model_checkpoint_with_bert_prefix_and_old_LayerNorm_names_loads()
    {
        using var temp = new TestModels.TempFolder();
        using var model = TestModels.TinyModel(seed: 4);
        var renamed = model.state_dict().ToDictionary(
            kv => "bert." + kv.Key.Replace("LayerNorm.weight", "LayerNorm.gamma").Replace("LayerNorm.bias", "LayerNorm.beta"),
            kv => kv.Value);
        renamed["classifier.weight"] = randn(3, 32);
        renamed["classifier.bias"] = zeros(3);
        SafeTensors.Save(temp.File("model.safetensors"), renamed);
        model.Config.Save(temp.File("config.json"));
        File.WriteAllBytes(temp.File("vocab.txt"), TinyVocab);

        using var loaded = PretrainedEncoder.Load(temp.Path);
        Assert.Equal(["classifier.bias", "classifier.weight"], loaded.OtherWeights.Keys.Order());
        Assert.True(loaded.Model.state_dict()["embeddings.LayerNorm.weight"].eq(model.state_dict()["embeddings.LayerNorm.weight"]).all().item<bool>());
    }

    [Fact]
    public void Missing_and_misshapen_weights_are_named()
    {
        using var temp = new TestModels.TempFolder();
        using var model = TestModels.TinyModel();
        var weights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        weights.Remove("encoder.layer.1.output.dense.bias");
        SafeTensors.Save(temp.File("model.safetensors"), weights);
        model.Config.Save(temp.File("config.json"));
        File.WriteAllBytes(temp.File("vocab.txt"), TinyVocab);
        var missing = Assert.Throws<InvalidDataException>(() => PretrainedEncoder.Load(temp.Path));
        Assert.Contains("encoder.layer.1.output.dense.bias", missing.Message);

        weights["encoder.layer.1.output.dense.bias"] = zeros(31);
        SafeTensors.Save(temp.File("model.safetensors"), weights);
        var misshapen = Assert.Throws<InvalidDataException>(() => PretrainedEncoder.Load(temp.Path));
        Assert.Contains("[31]", misshapen.Message);
        Assert.Contains("[32]", misshapen.Message);
    }

    [Fact]
    public void Bad_model_arguments_are_clear_errors()
    {
        using var temp = new TestModels.TempFolder();
        Assert.Throws<FileNotFoundException>(() => PretrainedEncoder.Load(temp.File("nope")));
        Assert.Throws<FileNotFoundException>(() => PretrainedEncoder.Load(temp.Path)); // a folder without config.json
        File.WriteAllText(temp.File("model.onnx"), "not onnx");
        Assert.Throws<FileNotFoundException>(() => PretrainedEncoder.Load(temp.File("model.onnx"))); // no vocab.txt beside it
        File.WriteAllBytes(temp.File("vocab.txt"), TinyVocab);
        Assert.Throws<InvalidDataException>(() => PretrainedEncoder.Load(temp.File("model.onnx")));
    }

    [Fact]
    public void An_onnx_file_with_its_vocabulary_loads_like_the_built_in()
    {
        using var temp = new TestModels.TempFolder();
        File.WriteAllBytes(temp.File("model.onnx"), BuiltInModels.MiniLM.ReadOnnx());
        File.WriteAllBytes(temp.File("vocab.txt"), BuiltInModels.MiniLM.ReadVocab());
        using var fromFile = PretrainedEncoder.Load(temp.File("model.onnx"));
        Assert.Equal(WeightOrigin.OnnxFile, fromFile.Origin);
        Assert.Equal(22_713_216, fromFile.ParameterCount);
    }
}
