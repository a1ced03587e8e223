using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Peft;

namespace SharpTune.Tests.Peft;

[Collection(PromptMethodsCollection.Name)]
public class PromptOptionsTests
{
    static readonly Dictionary<string, PeftSettings> Bad = new()
    {
        ["no virtual tokens"] = new() { VirtualTokens = 0 },
        ["no room for text"] = new() { VirtualTokens = 64 },
        ["unknown init"] = new() { PromptInit = "glove" },
        ["text without text"] = new() { PromptInit = "text" },
        ["token id outside the vocabulary"] = new() { PromptInit = "text", PromptInitText = "x", PromptInitTokenIds = [5, 99] },
        ["unknown encoder"] = new() { EncoderType = "gru" },
        ["no encoder hidden"] = new() { EncoderHidden = 0 },
        ["dropout of one"] = new() { PrefixDropout = 1 },
    };

    [Theory]
    [InlineData("prompt", "no virtual tokens", "--virtual-tokens")]
    [InlineData("ptuning", "no virtual tokens", "--virtual-tokens")]
    [InlineData("prefix", "no virtual tokens", "--virtual-tokens")]
    [InlineData("ptuning-v2", "no virtual tokens", "--virtual-tokens")]
    [InlineData("prompt", "no room for text", "--virtual-tokens")]
    [InlineData("ptuning", "no room for text", "--virtual-tokens")]
    [InlineData("prompt", "unknown init", "--prompt-init")]
    [InlineData("prompt", "text without text", "--prompt-init-text")]
    [InlineData("prompt", "token id outside the vocabulary", "PromptInitTokenIds")]
    [InlineData("ptuning", "unknown encoder", "--encoder-type")]
    [InlineData("ptuning", "no encoder hidden", "--encoder-hidden")]
    [InlineData("prefix", "no encoder hidden", "--encoder-hidden")]
    [InlineData("ptuning-v2", "dropout of one", "--prefix-dropout")]
    public void Bad_options_are_argument_errors_naming_the_option(string name, string bad, string option)
    {
        var method = PeftRegistry.Get(name);
        var settings = Bad[bad];
        Assert.Contains(option, Assert.Throws<ArgumentException>(() => method.Validate(settings, TestModels.TinyConfig)).Message);
        Assert.Contains(option, Assert.Throws<ArgumentException>(() => method.CreatePromptEncoder(settings, TestModels.TinyModel())).Message);
    }

    [Fact]
    public void The_four_methods_are_registered_with_their_PEFT_types_and_learning_rates()
    {
        var expected = new[] { ("prompt", "PROMPT_TUNING", 3e-2), ("ptuning", "P_TUNING", 1e-3), ("prefix", "PREFIX_TUNING", 1e-2), ("ptuning-v2", "PREFIX_TUNING", 1e-2) };
        foreach (var (name, type, rate) in expected)
        {
            var method = PeftRegistry.Get(name);
            Assert.Equal((name, type, rate), (method.Name, method.PeftType, method.DefaultLearningRate));
            Assert.Null(method.Linears(new PeftSettings(), TestModels.TinyConfig));
        }
    }

    [Fact]
    public void A_head_saved_under_LoRAs_base_model_model_prefix_loads_too()
    {
        var method = PeftRegistry.Get("prompt");
        var settings = new PeftSettings { VirtualTokens = 5 };
        var head = new HeadOptions(TaskKind.SingleLabel, 2);
        using var temp = new TestModels.TempFolder();
        using var model = PromptTestModels.Build(method, settings, head, seed: 1);
        method.SaveAdapter(temp.Path, model, settings, "tiny-bert");
        string weights = temp.File(AdapterFiles.WeightsFile);
        var renamed = SafeTensors.Load(weights).ToDictionary(kv => kv.Key.Replace("base_model.", "base_model.model."), kv => kv.Value);
        SafeTensors.Save(weights, renamed);

        using var loaded = PromptTestModels.Build(method, settings, head, seed: 2);
        method.LoadAdapter(temp.Path, loaded);
        Assert.True(loaded.Classifier.weight!.eq(model.Classifier.weight!).all().item<bool>());
    }

    [Fact]
    public void Loading_names_the_file_and_field_that_do_not_fit_the_model()
    {
        var method = PeftRegistry.Get("ptuning");
        var settings = new PeftSettings { VirtualTokens = 5, EncoderHidden = 11 };
        var head = new HeadOptions(TaskKind.SingleLabel, 2);
        using var temp = new TestModels.TempFolder();
        using (var model = PromptTestModels.Build(method, settings, head)) method.SaveAdapter(temp.Path, model, settings, "tiny-bert");

        using var longer = PromptTestModels.Build(method, settings with { VirtualTokens = 6 }, head);
        var error = Assert.Throws<InvalidDataException>(() => method.LoadAdapter(temp.Path, longer));
        Assert.Contains("num_virtual_tokens", error.Message);
        Assert.Contains(AdapterFiles.ConfigFile, error.Message);

        using var wider = PromptTestModels.Build(method, settings with { EncoderHidden = 12 }, head);
        error = Assert.Throws<InvalidDataException>(() => method.LoadAdapter(temp.Path, wider));
        Assert.Contains(PromptLearningMethod.EncoderFile, error.Message);
        Assert.Contains("mlp_head.0.weight", error.Message);

        using var plain = new TaskModel(TestModels.TinyModel(), head);
        Assert.Contains("ptuning", Assert.Throws<ArgumentException>(() => method.LoadAdapter(temp.Path, plain)).Message);
        Assert.Throws<ArgumentException>(() => PeftRegistry.Get("prompt").LoadAdapter(temp.Path, wider));
    }
}
