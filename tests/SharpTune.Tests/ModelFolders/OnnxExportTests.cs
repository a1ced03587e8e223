using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.ModelFolders;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tests.Cli;
using static TorchSharp.torch;

namespace SharpTune.Tests.ModelFolders;

/// <summary>
/// Exported encoders run in ONNX Runtime and give what SharpTune computes in process, within 1e-4 (of the outputs' scale):
/// every task kind, merged adapters, prompt methods' virtual tokens, embedding models as they pool and normalise; each file run at two batch sizes and
/// two lengths through one session, so the batch and sequence axes are dynamic.
/// </summary>
[Trait(Tolerances.Category, Tolerances.NumericParity)]
public class OnnxExportTests
{
    static readonly (int Batch, int Length)[] Shapes = [(2, 7), (5, 11)];

    static readonly byte[] Vocab = System.Text.Encoding.UTF8.GetBytes(string.Join("\n",
        new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(Enumerable.Range(0, 94).Select(i => $"w{i}"))) + "\n");

    public static TheoryData<string> TaskKinds => ["single-pooler", "single-cls", "single-mean", "multi-label", "regression", "tokens", "tokens-crf"];

    static HeadOptions Head(string kind) => kind switch
    {
        "single-pooler" => new(TaskKind.SingleLabel, 3),
        "single-cls" => new(TaskKind.SingleLabel, 3, UsePooler: false),
        "single-mean" => new(TaskKind.SingleLabel, 3, MeanPooling: true),
        "multi-label" => new(TaskKind.MultiLabel, 4),
        "regression" => new(TaskKind.Regression, 1),
        "tokens" => new(TaskKind.Tokens, 5),
        "tokens-crf" => new(TaskKind.Tokens, 5, UseCrf: true),
        _ => throw new ArgumentException(kind),
    };

    static LoadedTaskModel Loaded(TaskModel model, string method = "full")
    {
        var head = model.Head;
        // Classifier weights of unit scale (not the 0.02 of a fresh head), so logits are O(1) and a wrong graph shows.
        using (no_grad()) model.Classifier.weight!.normal_(0, 1);
        model.eval();
        var labels = head.Kind == TaskKind.Regression ? null : new LabelMap(Enumerable.Range(0, head.NumLabels).Select(i => $"L{i}").ToList());
        var spec = new TaskSpec { Kind = head.Kind, NumLabels = head.NumLabels, UseCrf = head.UseCrf, UsePooler = head.UsePooler, MeanPooling = head.MeanPooling, Method = method };
        return new LoadedTaskModel(model, Vocab, true, labels, spec);
    }

    /// <summary>SharpTune's logits: (B, K) per text, or (B, T, K) with every position read as a word for token tasks.</summary>
    static Tensor Logits(TaskModel model, Tensor ids, Tensor mask, Tensor types)
    {
        using var _ = no_grad();
        if (model.Head.Kind != TaskKind.Tokens) return model.forward(new ModelInputs(ids, mask, types));
        var positions = arange(ids.shape[1], dtype: ScalarType.Int64).unsqueeze(0).expand(ids.shape[0], -1).contiguous();
        return model.forward(new ModelInputs(ids, mask, types, positions, mask.to(ScalarType.Bool)));
    }

    static void AssertRuntimeMatches(TaskModel model, string onnx, string what)
    {
        using var session = new InferenceSession(onnx);
        int seed = 0;
        foreach (var (batch, length) in Shapes)
        {
            var (ids, mask, types) = OnnxRuntimeRun.Batch(batch, length, seed++);
            using var expected = Logits(model, ids, mask, types);
            var outputs = OnnxRuntimeRun.Run(session, ids, mask, types);
            Assert.Equal(["logits"], outputs.Keys);
            Tolerances.AssertClose(expected, outputs["logits"], Tolerances.DifferentKernelsThroughNetwork, $"{what}, batch {batch} x length {length}");
        }
    }

    [Theory]
    [MemberData(nameof(TaskKinds))]
    public void Task_model_logits_in_onnx_runtime_equal_sharptunes(string kind)
    {
        using var temp = new TestModels.TempFolder();
        using var loaded = Loaded(new TaskModel(TestModels.TinyModel(seed: 11), Head(kind)));
        string onnx = temp.File("model.onnx");
        var result = OnnxExport.ExportTaskModel(loaded, "tiny", onnx);
        Assert.Equal([Path.GetFullPath(onnx)], result.Files);
        AssertRuntimeMatches(loaded.Model, onnx, kind);

        using var session = new InferenceSession(onnx);
        foreach (string input in new[] { "input_ids", "attention_mask", "token_type_ids" })
        {
            Assert.Equal(typeof(long), session.InputMetadata[input].ElementType);
            Assert.Equal(["batch", "sequence"], session.InputMetadata[input].SymbolicDimensions);
        }
        var logits = session.OutputMetadata["logits"];
        int labels = loaded.Spec.NumLabels;
        Assert.Equal(kind.StartsWith("tokens") ? new[] { -1, -1, labels } : [-1, labels], logits.Dimensions);
        var metadata = session.ModelMetadata.CustomMetadataMap;
        Assert.Equal("task", metadata["sharptune.kind"]);
        if (loaded.Labels is not null) Assert.Equal("L1", JsonSerializer.Deserialize<Dictionary<string, string>>(metadata["id2label"])!["1"]);
    }

    [Fact]
    public void A_crf_model_exports_its_emissions_and_says_that_decoding_stays_outside()
    {
        using var temp = new TestModels.TempFolder();
        using var loaded = Loaded(new TaskModel(TestModels.TinyModel(seed: 12), Head("tokens-crf")));
        using (no_grad()) loaded.Model.Crf!.transitions.normal_(0, 1);
        var result = OnnxExport.ExportTaskModel(loaded, "tiny", temp.File("crf.onnx"));
        Assert.Contains(result.Notes, n => n.Contains("Viterbi decoding is not part of the ONNX graph") && n.Contains("emissions"));
        using var session = new InferenceSession(temp.File("crf.onnx"));
        var transitions = JsonSerializer.Deserialize<float[][]>(session.ModelMetadata.CustomMetadataMap["sharptune.crf.transitions"])!;
        Tolerances.AssertClose(loaded.Model.Crf.transitions.detach(), tensor(transitions.SelectMany(r => r).ToArray(), [5, 5]), Tolerances.Exact, "transitions");
        Assert.Equal(5, JsonSerializer.Deserialize<float[]>(session.ModelMetadata.CustomMetadataMap["sharptune.crf.end_transitions"])!.Length);
    }

    [Theory]
    [InlineData("lora")]
    [InlineData("ia3")]
    public void An_adapter_is_merged_into_the_exported_weights(string method)
    {
        using var temp = new TestModels.TempFolder();
        using var pretrained = PretrainedEncoder.Load(CliHarness.TinyModelFolder(temp));
        var peft = PeftRegistry.Get(method);
        manual_seed(3);
        var model = TaskModelBuilder.Build(pretrained, new HeadOptions(TaskKind.SingleLabel, 3), peft, new PeftSettings { LoraR = 4, LoraAlpha = 8 });
        // A trained adapter: LoRA's B (zero when new) and IA3's scales (one when new) moved away from the identity.
        using (no_grad())
            foreach (var (name, parameter) in model.named_parameters())
                if (name.Contains("lora_B") || name.Contains("ia3_l")) parameter.add_(randn_like(parameter) * 0.5);
        using var loaded = Loaded(model, method);
        var result = OnnxExport.ExportTaskModel(loaded, "tiny", temp.File("merged.onnx"));
        Assert.Contains(result.Notes, n => n.Contains($"the {method} adapter is merged"));
        AssertRuntimeMatches(model, temp.File("merged.onnx"), method);

        AssertMethodTakesPart(pretrained, model, method);   // the adapter
    }

    public static TheoryData<string, string> PromptMethods()
    {
        var data = new TheoryData<string, string>();
        foreach (string method in new[] { "prompt", "ptuning", "prefix", "ptuning-v2" })
            foreach (string kind in new[] { "single-pooler", "single-cls", "single-mean", "tokens" })
                data.Add(method, kind);
        return data;
    }

    [Theory]
    [MemberData(nameof(PromptMethods))]
    public void A_prompt_method_exports_its_virtual_tokens_in_the_graph(string method, string kind)
    {
        using var temp = new TestModels.TempFolder();
        using var pretrained = PretrainedEncoder.Load(CliHarness.TinyModelFolder(temp));
        manual_seed(5);
        var settings = new PeftSettings { VirtualTokens = 3, EncoderHidden = 8 };
        var model = TaskModelBuilder.Build(pretrained, Head(kind), PeftRegistry.Get(method), settings);
        using var loaded = Loaded(model, method);
        var result = OnnxExport.ExportTaskModel(loaded, "tiny", temp.File("prompt.onnx"));
        Assert.Contains(result.Notes, n => n.Contains($"the {method} prompt (3 virtual tokens") && n.Contains("written into the graph"));
        AssertRuntimeMatches(model, temp.File("prompt.onnx"), $"{method}, {kind}");

        AssertMethodTakesPart(pretrained, model, method);   // the prompt
    }

    /// <summary>The method takes part: the base model with the same head (its classifier copied) scores otherwise.</summary>
    static void AssertMethodTakesPart(PretrainedEncoder pretrained, TaskModel model, string method)
    {
        using var plain = TaskModelBuilder.Build(pretrained, model.Head);
        using (no_grad())
        {
            plain.Classifier.weight!.copy_(model.Classifier.weight!);
            plain.Classifier.bias!.copy_(model.Classifier.bias!);
        }
        plain.eval();
        var (ids, mask, types) = OnnxRuntimeRun.Batch(3, 9, seed: 4);
        Tolerances.AssertDistinct(Logits(model, ids, mask, types), Logits(plain, ids, mask, types), $"{method} against the base");
    }

    /// <summary>A sentence-transformers folder: modules.json with a Pooling module (mean or cls) and, when asked, Normalize.</summary>
    static string SentenceTransformersFolder(TestModels.TempFolder temp, string mode, bool normalize)
    {
        string folder = CliHarness.TinyModelFolder(temp, $"st-{mode}-{normalize}");
        var modules = new List<object>
        {
            new { idx = 0, name = "0", path = "", type = "sentence_transformers.models.Transformer" },
            new { idx = 1, name = "1", path = "1_Pooling", type = "sentence_transformers.models.Pooling" },
        };
        if (normalize) modules.Add(new { idx = 2, name = "2", path = "2_Normalize", type = "sentence_transformers.models.Normalize" });
        File.WriteAllText(Path.Combine(folder, "modules.json"), JsonSerializer.Serialize(modules));
        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), $"{{\"pooling_mode_{mode}\": true}}");
        return folder;
    }

    [Theory]
    [InlineData("mean_tokens", true, Pooling.Mean)]
    [InlineData("cls_token", true, Pooling.Cls)]
    [InlineData("mean_tokens", false, Pooling.Mean)]
    [InlineData(null, false, Pooling.Pooler)]
    public void Embedding_model_outputs_in_onnx_runtime_equal_sharptunes(string? mode, bool normalize, Pooling pooling)
    {
        using var temp = new TestModels.TempFolder();
        string folder = mode is null ? CliHarness.TinyModelFolder(temp) : SentenceTransformersFolder(temp, mode, normalize);
        using var encoder = PretrainedEncoder.Load(folder);
        var embedding = SentenceEmbedding.For(folder, encoder);
        Assert.Equal((pooling, normalize), (embedding.Pooling, embedding.Normalize));
        var result = OnnxExport.ExportEncoder(encoder, embedding, folder, temp.File("out"));
        Assert.Equal(["model.onnx", "vocab.txt", "tokenizer_config.json", "config.json"], result.Files.Select(Path.GetFileName));

        using var session = new InferenceSession(temp.File("out/model.onnx"));
        Assert.Equal(normalize ? "true" : "false", session.ModelMetadata.CustomMetadataMap["sharptune.normalize"]);
        int seed = 20;
        foreach (var (batch, length) in Shapes)
        {
            var (ids, mask, types) = OnnxRuntimeRun.Batch(batch, length, seed++);
            var outputs = OnnxRuntimeRun.Run(session, ids, mask, types);
            using var _ = no_grad();
            using var hidden = encoder.Model.forward(ids, mask, types);
            using var expected = embedding.Embed(encoder.Model, ids, mask, types);
            Tolerances.AssertClose(hidden.LastHiddenState, outputs["last_hidden_state"], Tolerances.DifferentKernelsThroughNetwork, $"last_hidden_state {batch} x {length}");
            Tolerances.AssertClose(expected, outputs["sentence_embedding"], Tolerances.DifferentKernelsThroughNetwork, $"sentence_embedding {batch} x {length}");
            if (normalize) Tolerances.AssertClose(ones(batch), outputs["sentence_embedding"].norm(1), Tolerances.Rounding * 10, "unit length");
        }
    }

    [Fact]
    public void An_exported_folder_loads_back_as_a_sharptune_encoder()
    {
        using var temp = new TestModels.TempFolder();
        string folder = SentenceTransformersFolder(temp, "mean_tokens", normalize: true);
        using var encoder = PretrainedEncoder.Load(folder);
        OnnxExport.Export(folder, temp.File("out"));
        using var reloaded = PretrainedEncoder.Load(temp.File("out/model.onnx"));
        Assert.Equal(encoder.Model.state_dict().Keys.Order(), reloaded.Model.state_dict().Keys.Order());
        var (ids, mask, types) = OnnxRuntimeRun.Batch(3, 8, seed: 9);
        using var _ = no_grad();
        using var a = encoder.Model.forward(ids, mask, types);
        using var b = reloaded.Model.forward(ids, mask, types);
        Tolerances.AssertClose(a.LastHiddenState, b.LastHiddenState, Tolerances.Rounding, "reloaded encoder");
    }

    [Fact]
    public void The_built_in_minilm_exports_its_normalised_mean_pooled_embedding()
    {
        using var temp = new TestModels.TempFolder();
        using var encoder = PretrainedEncoder.Load("minilm");
        var result = OnnxExport.Export("minilm", temp.File("minilm.onnx"));
        Assert.Contains(result.Outputs, o => o.StartsWith("sentence_embedding (batch, 384): mean pooling, normalised to unit length"));
        var embedding = SentenceEmbedding.For("minilm", encoder);
        var tokenizer = encoder.CreateTokenizer();
        using var session = new InferenceSession(temp.File("minilm.onnx"));
        string[][] batches =
        [
            ["A short sentence."],
            ["The cat sat on the mat.", "Fine-tuning small encoders on a laptop works.", "ok", "ONNX Runtime runs the exported graph with dynamic axes."],
        ];
        foreach (var texts in batches)
        {
            using var batch = SharpTune.Tokenization.TokenBatch.Collate(texts.Select(t => tokenizer.Encode(t)).ToArray(), tokenizer.PadId);
            var outputs = OnnxRuntimeRun.Run(session, batch.InputIds, batch.AttentionMask, batch.TokenTypeIds);
            using var _ = no_grad();
            using var expected = embedding.Embed(encoder.Model, batch.InputIds, batch.AttentionMask, batch.TokenTypeIds);
            Tolerances.AssertClose(expected, outputs["sentence_embedding"], Tolerances.DifferentKernelsThroughNetwork, $"minilm, {texts.Length} texts");
            using var hidden = encoder.Model.forward(batch.InputIds, batch.AttentionMask, batch.TokenTypeIds);
            Tolerances.AssertClose(hidden.LastHiddenState, outputs["last_hidden_state"], Tolerances.DifferentKernelsThroughNetwork, $"minilm states, {texts.Length} texts");
        }
    }
}
