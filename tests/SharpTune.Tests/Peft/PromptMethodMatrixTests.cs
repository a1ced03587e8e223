using SharpTune.Models.Bert;
using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Peft;
using SharpTune.Tests.Training;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>Every prompt method through the same checks (STYLE.md: one matrix for all PEFT methods).</summary>
[Collection(PromptMethodsCollection.Name)]
public class PromptMethodMatrixTests
{
    public static TheoryData<string> Cases => PromptTestModels.Cases;

    static readonly long[] Short = [2, 11, 12, 13, 3];
    static readonly long[] Long = [2, 20, 21, 22, 23, 24, 25, 3];

    [Theory]
    [MemberData(nameof(Cases))]
    public void Training_changes_only_the_prompt_module_and_the_head(string testCase)
    {
        var (method, settings) = PromptTestModels.Resolve(testCase);
        using var model = PromptTestModels.Build(method, settings, new HeadOptions(TaskKind.SingleLabel, 2));
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.All(trainable, name => Assert.True(name.StartsWith("prompt_encoder.") || name.StartsWith("classifier."), name));
        Assert.Contains(trainable, name => name.StartsWith("prompt_encoder."));

        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var data = TrainerTests.ToyData(TaskKind.SingleLabel, 16, seed: 1);
        var options = new TrainingOptions { Epochs = 1, BatchSize = 8, LearningRate = 1e-2, WarmupRatio = 0, Schedule = "constant" };
        new Trainer(model, options, 0, (_, _) => new Dictionary<string, double>()).Train(data, null);

        foreach (var (name, parameter) in model.named_parameters())
        {
            bool same = parameter.eq(before[name]).all().item<bool>();
            if (parameter.requires_grad) Assert.False(same, $"{testCase}: trainable {name} did not change");
            else Assert.True(same, $"{testCase}: frozen {name} changed");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Save_then_load_gives_identical_logits_from_the_full_file_and_from_prompt_embeddings_alone(string testCase)
    {
        var (method, settings) = PromptTestModels.Resolve(testCase);
        var head = new HeadOptions(TaskKind.SingleLabel, 3);
        using var inputs = PromptTestModels.Inputs(Short, Long);
        using var temp = new TestModels.TempFolder();
        using var trained = PromptTestModels.Build(method, settings, head, seed: 3);
        // Every forward here runs without autograd, as prediction does and as SaveAdapter computes the stored
        // table, so the loads are compared with the same kernels, exactly. libtorch may pick other kernels with
        // autograd on (it did for the LSTM: PTuningTests has that case against float64), so that comparison is
        // one of different kernels.
        using var expected = Logits(trained, inputs);
        using (var withAutograd = trained.forward(inputs))
            Tolerances.AssertClose(expected, withAutograd, Tolerances.DifferentKernelsThroughNetwork, $"{testCase}: autograd on against off");
        method.SaveAdapter(temp.Path, trained, settings, "tiny-bert");
        Assert.True(File.Exists(temp.File(PromptLearningMethod.EncoderFile)));

        using var resumed = PromptTestModels.Build(method, settings, head, seed: 4);
        using (var fresh = Logits(resumed, inputs))
            Tolerances.AssertDistinct(expected, fresh, $"{testCase}: a fresh module before loading");
        method.LoadAdapter(temp.Path, resumed);
        using (var logits = Logits(resumed, inputs))
            Tolerances.AssertClose(expected, logits, Tolerances.Exact, $"{testCase}: full-file load");
        var trainedWeights = trained.state_dict();
        foreach (var (key, value) in resumed.state_dict())
            Assert.True(value.eq(trainedWeights[key]).all().item<bool>(), $"{key} differs after loading the full file");

        // PEFT's file alone: prompt_embeddings is the module's output, computed by the same kernels as above.
        File.Delete(temp.File(PromptLearningMethod.EncoderFile));
        using var peftOnly = PromptTestModels.Build(method, settings, head, seed: 5);
        method.LoadAdapter(temp.Path, peftOnly);
        method.Freeze(peftOnly, settings);
        using (var logits = Logits(peftOnly, inputs))
            Tolerances.AssertClose(expected, logits, Tolerances.Exact, $"{testCase}: PEFT-only load");
        var module = (PromptModule)peftOnly.PromptEncoder!;
        bool tableIsTheParameter = method.Name is "prompt" or "ptuning-v2";
        Assert.Equal(!tableIsTheParameter, module.IsFixed);
        bool promptTrains = peftOnly.named_parameters().Where(p => p.name.StartsWith("prompt_encoder.")).All(p => p.parameter.requires_grad);
        Assert.Equal(tableIsTheParameter, promptTrains);

        // Saving a fixed module writes the same table and no full file.
        using var again = new TestModels.TempFolder();
        method.SaveAdapter(again.Path, peftOnly, settings, "tiny-bert");
        Assert.Equal(tableIsTheParameter, File.Exists(again.File(PromptLearningMethod.EncoderFile)));
        using var first = SafeTensors.Load(temp.File(AdapterFiles.WeightsFile))["prompt_embeddings"];
        using var second = SafeTensors.Load(again.File(AdapterFiles.WeightsFile))["prompt_embeddings"];
        Assert.True(first.eq(second).all().item<bool>());
    }

    static Tensor Logits(TaskModel model, ModelInputs inputs)
    {
        using var noGrad = no_grad();
        return model.forward(inputs);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void A_sentence_alone_and_padded_in_a_batch_gives_the_same_logits(string testCase)
    {
        var (method, settings) = PromptTestModels.Resolve(testCase);
        foreach (var head in new[] { new HeadOptions(TaskKind.SingleLabel, 3), new HeadOptions(TaskKind.Tokens, 4) })
        {
            using var model = PromptTestModels.Build(method, settings, head);
            using var alone = PromptTestModels.Inputs(Short);
            using var batch = PromptTestModels.Inputs(Short, Long);
            using var single = model.forward(alone);
            using var batched = model.forward(batch);
            if (head.IsSequenceTask)
            {
                Assert.Equal([2L, 3L], batched.shape);
                // One row against a padded batch of two: other shapes, so other kernel blockings, through the network.
                Tolerances.AssertClose(single[0], batched[0], Tolerances.DifferentKernelsThroughNetwork, $"{testCase}: padding changed the logits");
            }
            else
            {
                Assert.Equal([2L, 6L, 4L], batched.shape); // (B, W, K): one row per word, none for the prompts
                Tolerances.AssertClose(single[0], batched[0, ..3], Tolerances.DifferentKernelsThroughNetwork, $"{testCase}: padding changed the word logits");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Heads_read_the_real_CLS_and_the_real_words_after_the_virtual_tokens(string testCase)
    {
        var (method, settings) = PromptTestModels.Resolve(testCase);
        int virtualTokens = PromptTestModels.IsInputSide(method) ? settings.VirtualTokens : 0;
        using var inputs = PromptTestModels.Inputs(Short, Long);
        foreach (var head in new[] { new HeadOptions(TaskKind.SingleLabel, 3, UsePooler: false), new HeadOptions(TaskKind.Tokens, 4) })
        {
            using var model = PromptTestModels.Build(method, settings, head);
            using var scope = NewDisposeScope();
            var prepared = ((IEncoderInputAdapter)model.PromptEncoder!).Prepare(model.Encoder, inputs.InputIds, inputs.AttentionMask, inputs.TokenTypeIds);
            Assert.Equal(virtualTokens, prepared.VirtualTokens);
            var hidden = model.Encoder.forward(prepared.InputIds, prepared.AttentionMask, prepared.TokenTypeIds,
                prepared.InputsEmbeds, prepared.Prefixes).LastHiddenState; // (B, P+T, H)
            var logits = model.forward(inputs);
            if (head.IsSequenceTask)
            {
                var atCls = model.Classifier.forward(hidden[.., virtualTokens]);
                // The same encoder forward and the same (B, H) product as inside the model.
                Tolerances.AssertClose(atCls, logits, Tolerances.Exact, $"{testCase}: not read at position {virtualTokens}");
                if (virtualTokens > 0)
                    Tolerances.AssertDistinct(logits, model.Classifier.forward(hidden[.., 0]), $"{testCase}: position 0 is a prompt");
            }
            else
            {
                var words = inputs.WordPositions!;
                for (int b = 0; b < 2; b++)
                    for (int w = 0; w < words.shape[1]; w++)
                    {
                        if (!inputs.WordMask![b, w].item<bool>()) continue;
                        var expected = model.Classifier.forward(hidden[b, virtualTokens + words[b, w].item<long>()]);
                        // One row through the classifier against all words at once: another product kernel.
                        Tolerances.AssertClose(expected, logits[b, w], Tolerances.DifferentKernels, $"{testCase}: word {w} of row {b} misaligned");
                    }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_adapter_parameter_is_in_the_state_dict_under_PEFTs_name(string testCase)
    {
        var (method, settings) = PromptTestModels.Resolve(testCase);
        using var model = PromptTestModels.Build(method, settings, new HeadOptions(TaskKind.SingleLabel, 2));
        var golden = GoldenKeys(testCase);
        var stateDict = model.state_dict().Where(kv => kv.Key.StartsWith("prompt_encoder."))
            .ToDictionary(kv => kv.Key["prompt_encoder.".Length..], kv => kv.Value.shape);
        Assert.Equal(golden.Keys.Order(), stateDict.Keys.Order());
        foreach (var (key, shape) in golden) Assert.Equal(shape, stateDict[key]);
        var parameters = model.named_parameters().Select(p => p.name).Where(n => n.StartsWith("prompt_encoder.")).Select(n => n["prompt_encoder.".Length..]);
        Assert.Equal(golden.Keys.Order(), parameters.Order());
    }

    /// <summary>P 5, H 32, L 2, h 11: PEFT's module names and shapes.</summary>
    static Dictionary<string, long[]> GoldenKeys(string testCase) => testCase switch
    {
        "prompt" => new() { ["embedding.weight"] = [5, 32] },
        "ptuning" => new()
        {
            ["embedding.weight"] = [5, 32],
            ["mlp_head.0.weight"] = [11, 32], ["mlp_head.0.bias"] = [11],
            ["mlp_head.2.weight"] = [11, 11], ["mlp_head.2.bias"] = [11],
            ["mlp_head.4.weight"] = [32, 11], ["mlp_head.4.bias"] = [32],
        },
        "ptuning:lstm" => new Dictionary<string, long[]>
        {
            ["embedding.weight"] = [5, 32],
            ["mlp_head.0.weight"] = [22, 22], ["mlp_head.0.bias"] = [22],
            ["mlp_head.2.weight"] = [32, 22], ["mlp_head.2.bias"] = [32],
        }.Concat(from layer in new[] { 0, 1 }
                 from direction in new[] { "", "_reverse" }
                 from entry in new (string Name, long[] Shape)[]
                 {
                     ("weight_ih", [44, layer == 0 ? 32 : 22]), ("weight_hh", [44, 11]), ("bias_ih", [44]), ("bias_hh", [44]),
                 }
                 select KeyValuePair.Create($"lstm_head.{entry.Name}_l{layer}{direction}", entry.Shape)).ToDictionary(),
        "prefix" => new()
        {
            ["embedding.weight"] = [5, 32],
            ["transform.0.weight"] = [11, 32], ["transform.0.bias"] = [11],
            ["transform.2.weight"] = [128, 11], ["transform.2.bias"] = [128],
        },
        _ => new() { ["embedding.weight"] = [5, 128] },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_adapter_holds_PEFTs_keys_and_the_settings_read_back(string testCase)
    {
        var (method, settings) = PromptTestModels.Resolve(testCase);
        using var model = PromptTestModels.Build(method, settings, new HeadOptions(TaskKind.SingleLabel, 2));
        using var temp = new TestModels.TempFolder();
        method.SaveAdapter(temp.Path, model, settings, "tiny-bert");
        var tensors = SafeTensors.Load(temp.File(AdapterFiles.WeightsFile));
        Assert.Equal(["base_model.classifier.bias", "base_model.classifier.weight", "prompt_embeddings"], tensors.Keys.Order());
        long width = PromptTestModels.IsInputSide(method) ? 32 : 2 * 2 * 32;
        Assert.Equal([5L, width], tensors["prompt_embeddings"].shape);

        var config = AdapterFiles.ReadConfig(temp.Path);
        Assert.Same(method, PeftRegistry.ForAdapter(config, temp.Path));
        var read = method.ReadSettings(config, temp.Path);
        Assert.Equal(settings.VirtualTokens, read.VirtualTokens);
        if (method.Name is "ptuning") Assert.Equal((settings.EncoderType, settings.EncoderHidden), (read.EncoderType, read.EncoderHidden));
        if (method.Name is "prefix") Assert.Equal(settings.EncoderHidden, read.EncoderHidden);

        // The settings read back rebuild a model the adapter loads into.
        using var rebuilt = PromptTestModels.Build(method, read, new HeadOptions(TaskKind.SingleLabel, 2), seed: 9);
        method.LoadAdapter(temp.Path, rebuilt);
    }
}
