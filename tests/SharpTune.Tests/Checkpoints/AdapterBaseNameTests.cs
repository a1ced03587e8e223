using SharpTune.Models.Bert;
using SharpTune.Inference;
using SharpTune.ModelFolders;
using System.Text;
using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Checkpoints;

/// <summary>
/// adapter_config.json's base_model_name_or_path is what PEFT loads the base from, so it names the base as Python
/// finds it; SharpTune reloads the base from sharptune_task.json's base_model, which keeps what the user typed.
/// </summary>
public class AdapterBaseNameTests
{
    [Theory]
    [InlineData("minilm", "sentence-transformers/all-MiniLM-L6-v2")]
    [InlineData("MiniLM", "sentence-transformers/all-MiniLM-L6-v2")]
    [InlineData("arctic-xs", "Snowflake/snowflake-arctic-embed-xs")]
    [InlineData("/models/bert-base-uncased", "bert-base-uncased")]
    [InlineData("/models/bert-base-uncased/", "bert-base-uncased")]
    [InlineData("models/my-bert", "my-bert")]
    [InlineData("/exports/e5-small.onnx", "e5-small")]
    [InlineData("/exports/model.ONNX", "model")]
    public void Built_ins_give_their_Hugging_Face_id_and_paths_their_own_name(string baseModel, string expected) =>
        Assert.Equal(expected, BuiltInModels.HuggingFaceName(baseModel));

    [Fact]
    public void Every_built_in_has_a_Hugging_Face_id() =>
        Assert.All(BuiltInModels.All, m => Assert.Matches("^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$", m.HuggingFaceId));

    [Fact]
    public void A_minilm_adapter_names_the_hub_id_and_still_reloads_from_the_alias()
    {
        using var temp = new TestModels.TempFolder();
        string folder = temp.File("model");
        using var pretrained = PretrainedEncoder.Load("minilm");
        var method = PeftRegistry.Get("lora");
        var spec = new TaskSpec { Kind = TaskKind.SingleLabel, NumLabels = 2, Method = "lora", BaseModel = "minilm" };
        using var model = TaskModelBuilder.Build(pretrained, spec.Head, method, new PeftSettings());
        Perturb(model);
        TaskModelFolder.Save(folder, model, pretrained.Vocab, pretrained.LowerCase, null, spec, method, new PeftSettings());

        var config = AdapterFiles.ReadConfig(Path.Combine(folder, TaskModelFolder.AdapterFolder));
        Assert.Equal("sentence-transformers/all-MiniLM-L6-v2", config["base_model_name_or_path"]!.GetValue<string>());
        Assert.Equal("minilm", TaskSpec.Load(folder).BaseModel);

        using var ids = tensor(new long[] { 101, 7592, 2088, 2003, 2307, 102 }, [1, 6]);
        AssertReloads(folder, "minilm", model, ids);
    }

    [Fact]
    public void A_folder_based_adapter_names_the_folder_and_still_reloads_from_its_path()
    {
        using var temp = new TestModels.TempFolder();
        string baseFolder = temp.File("my-tiny-bert");
        var words = new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(Enumerable.Range(0, 94).Select(i => $"w{i}"));
        using (var tiny = TestModels.TinyModel(seed: 5))
            BertFolder.Save(baseFolder, tiny, Encoding.UTF8.GetBytes(string.Join("\n", words) + "\n"), lowerCase: true);

        string folder = temp.File("model");
        using var pretrained = PretrainedEncoder.Load(baseFolder);
        var method = PeftRegistry.Get("prompt");
        var settings = new PeftSettings { VirtualTokens = 3 };
        var spec = new TaskSpec { Kind = TaskKind.SingleLabel, NumLabels = 3, Method = "prompt", BaseModel = baseFolder };
        using var model = TaskModelBuilder.Build(pretrained, spec.Head, method, settings);
        Perturb(model);
        TaskModelFolder.Save(folder, model, pretrained.Vocab, pretrained.LowerCase, null, spec, method, settings);

        var config = AdapterFiles.ReadConfig(Path.Combine(folder, TaskModelFolder.AdapterFolder));
        Assert.Equal("my-tiny-bert", config["base_model_name_or_path"]!.GetValue<string>());
        Assert.Equal(baseFolder, TaskSpec.Load(folder).BaseModel);

        using var ids = tensor(new long[] { 2, 11, 12, 13, 3 }, [1, 5]);
        AssertReloads(folder, baseFolder, model, ids);
    }

    /// <summary>The saved folder loads alone and into an <see cref="AdapterHost"/> over its base, both giving the saved model's logits.</summary>
    static void AssertReloads(string folder, string baseModel, TaskModel saved, Tensor ids)
    {
        var inputs = new ModelInputs(ids, ones_like(ids), zeros_like(ids));
        saved.eval();
        using var noGrad = no_grad();
        using var expected = saved.forward(inputs);
        using (var alone = TaskModelFolder.Load(folder))
        using (var logits = alone.Model.forward(inputs))
            Tolerances.AssertClose(expected, logits, Tolerances.Exact, "reloaded alone");
        using var host = new AdapterHost(baseModel);
        host.Add("task", folder);
        using (var logits = host.Get("task").Model.forward(inputs))
            Tolerances.AssertClose(expected, logits, Tolerances.Exact, "reloaded into an adapter host");
    }

    /// <summary>Moves the trainable parameters, so the adapter and head differ from a fresh model's.</summary>
    static void Perturb(TaskModel model)
    {
        manual_seed(17);
        using var noGrad = no_grad();
        foreach (var (_, parameter) in model.named_parameters())
            if (parameter.requires_grad) parameter.add_(randn_like(parameter) * 0.1);
    }
}
