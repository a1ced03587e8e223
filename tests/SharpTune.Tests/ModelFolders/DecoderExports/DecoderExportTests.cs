using SharpTune.Models.Decoders.Gguf;
using SharpTune.Checkpoints.Gguf;
using SharpTune.ModelFolders.DecoderExports;
using SharpTune.Models.Decoders;
using SharpTune.Peft;
using SharpTune.Peft.IA3;
using SharpTune.Peft.Lora;
using static SharpTune.Tests.ModelFolders.DecoderExports.ExportTestModels;
using static TorchSharp.torch;

namespace SharpTune.Tests.ModelFolders.DecoderExports;

/// <summary>
/// The exports read back by SharpTune (llama.cpp reads them in Oracle/DecoderExportTests), the tensor types they are
/// written in, the Ollama Modelfile, and the clear errors a user can hit.
/// </summary>
public class DecoderExportTests
{
    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void Merged_f32_gguf_reads_back_as_the_merged_weights_exactly(string family)
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), family);
        using var model = Adapted(basePath, Lora(AllLinears));
        string merged = temp.File("merged.gguf");
        var result = DecoderExport.MergedGguf(model, DecoderSource.Gguf(basePath), merged, GgufTensorType.F32);
        Assert.Contains(result.Notes, n => n.StartsWith("14 adapter layer(s) merged", StringComparison.Ordinal));

        var expected = MergedExport.PlainStateDict(model.Module);
        var map = GgufModelMap.Open(merged);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), map.Tensors.Select(t => t.HfKey).Order(StringComparer.Ordinal));
        foreach (var (key, value) in map.ReadTensors()) Tolerances.AssertClose(expected[key], value, Tolerances.Exact, key); // permuted there and back
        var source = GgufFile.Open(basePath);
        foreach (var (key, value) in source.Metadata.Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)))
            Assert.Equal(value.Value, map.File.Metadata[key].Value); // the base's tokenizer, copied
        Assert.Equal(("model", 0L), (map.File.GetString("general.type"), map.File.GetInt("general.file_type")));
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Ia3_layers_merge_into_the_gguf_and_the_folder_but_are_no_lora_adapter()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "qwen2");
        // Qwen2's k/v projections have biases: IA3 scales their outputs, bias included.
        using var model = Adapted(basePath, site => site.Path.EndsWith("k_proj") || site.Path.EndsWith("v_proj")
            ? new Ia3Linear(site, isFeedForward: false) : SharpTune.Models.Decoders.Common.DecoderLinears.Plain(site));
        using var adapted = Logits(model, Tokens);
        string merged = temp.File("merged.gguf");
        DecoderExport.MergedGguf(model, DecoderSource.Gguf(basePath), merged, GgufTensorType.F32);
        using var reloaded = LanguageModel.Load(merged);
        using var logits = Logits(reloaded.Model, Tokens);
        Tolerances.AssertClose(adapted, logits, Tolerances.DifferentKernelsThroughNetwork, "IA3 merged into the GGUF"); // W * l against (W x) * l

        var error = Assert.Throws<NotSupportedException>(() => DecoderExport.LoraGguf(model, DecoderSource.Gguf(basePath), temp.File("adapter.gguf")));
        Assert.Contains("model.layers.0.self_attn.k_proj is a Ia3Linear", error.Message);
        Assert.Contains("LoRA pairs only", error.Message);
    }

    [Theory]
    [InlineData(GgufTensorType.F16, 1u)]
    [InlineData(GgufTensorType.BF16, 32u)]
    [InlineData(GgufTensorType.Q8_0, 7u)]
    public void Matrices_take_the_asked_type_and_vectors_stay_f32(GgufTensorType type, uint fileType)
    {
        using var temp = new TestModels.TempFolder();
        // Hidden size 64: rows Q8_0's blocks of 32 fit; the intermediate size 83 they do not.
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "qwen2", sizes: Sizes with { Hidden = 64, Heads = 4 });
        using var model = Adapted(basePath, Lora("q_proj"));
        string path = temp.File("merged.gguf");
        var result = DecoderExport.MergedGguf(model, DecoderSource.Gguf(basePath), path, type);
        var file = GgufFile.Open(path);
        Assert.Equal(fileType, (uint)file.GetInt("general.file_type"));
        Assert.Equal(type == GgufTensorType.Q8_0, file.HasKey("general.quantization_version"));
        Assert.All(file.Tensors.Where(t => t.Dims.Length == 1), t => Assert.Equal(GgufTensorType.F32, t.Type));
        Assert.Equal(type, file.GetTensor("blk.0.attn_q.weight").Type);
        // ffn_down's rows hold the intermediate size: F16, and said so.
        Assert.Equal(type == GgufTensorType.Q8_0 ? GgufTensorType.F16 : type, file.GetTensor("blk.1.ffn_down.weight").Type);
        Assert.Equal(type == GgufTensorType.Q8_0, result.Notes.Any(n => n.Contains("blk.0.ffn_down.weight")));
        using var reloaded = LanguageModel.Load(path); // SharpTune reads every type it writes
    }

    [Fact]
    public void Lora_gguf_holds_the_pairs_with_llamas_permutation_and_a_modelfile_beside_it()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "llama");
        using var model = Adapted(basePath, Lora("q_proj", "v_proj"));
        string adapter = temp.File("run/export/adapter.gguf");
        var result = DecoderExport.LoraGguf(model, DecoderSource.Gguf(basePath), adapter, GgufTensorType.F16);
        var file = GgufFile.Open(adapter);
        Assert.Equal(("llama", "adapter", "lora", 16.0), (file.GetString("general.architecture"), file.GetString("general.type"),
            file.GetString("adapter.type"), file.GetFloat("adapter.lora.alpha")));
        Assert.All(file.Tensors, t => Assert.Equal(GgufTensorType.F16, t.Type));
        var state = model.Module.state_dict();
        using var b = state["model.layers.1.self_attn.q_proj.lora_B.weight"].to(ScalarType.Float16).to(ScalarType.Float32);
        using var permuted = GgufPermutation.ToLlamaCpp(b, Sizes.Heads);
        Tolerances.AssertClose(permuted, file.ReadTensor("blk.1.attn_q.weight.lora_b"), Tolerances.Exact, "q's lora_b rows permuted");
        using var a = state["model.layers.1.self_attn.q_proj.lora_A.weight"].to(ScalarType.Float16).to(ScalarType.Float32);
        Tolerances.AssertClose(a, file.ReadTensor("blk.1.attn_q.weight.lora_a"), Tolerances.Exact, "lora_a as it is");

        string modelfile = temp.File("run/export/adapter.Modelfile");
        Assert.Equal(modelfile, result.Files[^1]);
        var lines = File.ReadAllLines(modelfile);
        Assert.Contains($"FROM {Path.GetFullPath(basePath)}", lines); // outside the Modelfile's folder: the full path
        Assert.Contains("ADAPTER ./adapter.gguf", lines);
        Assert.Contains("PARAMETER stop \"</s>\"", lines);
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Merged_hugging_face_folder_from_a_gguf_base_loads_back_with_its_tokenizer_and_the_adapted_logits()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "llama", tied: true);
        using var model = Adapted(basePath, Lora(AllLinears));
        using var adapted = Logits(model, Tokens);
        string folder = temp.File("merged");
        var result = DecoderExport.MergedHuggingFace(model, DecoderSource.Gguf(basePath), folder);
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"], result.Files.Select(Path.GetFileName));
        using var reloaded = LanguageModel.Load(folder);
        Assert.DoesNotContain(reloaded.Model.Module.state_dict().Keys, k => k.Contains("lora_"));
        using var logits = Logits(reloaded.Model, Tokens);
        Tolerances.AssertClose(adapted, logits, Tolerances.DifferentKernelsThroughNetwork, "merged folder"); // W + sBA in one product
        using var original = LanguageModel.Load(basePath);
        foreach (string text in new[] { "hello world", "▁tok260 tok261", "Zürich 🙂 <s>" })
            Assert.Equal(original.Tokenizer.Encode(text, parseSpecial: true), reloaded.Tokenizer.Encode(text, parseSpecial: true));
        Assert.Equal(original.Template is null, reloaded.Template is null);
    }

    [Fact]
    public void Bad_requests_are_refused_with_errors_that_name_what()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "qwen2");
        var source = DecoderSource.Gguf(basePath);
        using var model = Adapted(basePath, Lora("q_proj"));

        Assert.Contains("choose one of f32, f16, bf16, q8_0, q4_0", Assert.Throws<ArgumentException>(() => DecoderExport.ParseTensorType("iq2_xs")).Message);
        Assert.Equal(GgufTensorType.Q4_K, DecoderExport.ParseTensorType("q4_k"));
        Assert.Equal(GgufTensorType.BF16, DecoderExport.ParseTensorType("BF16"));
        Directory.CreateDirectory(temp.File("out.gguf"));
        Assert.Contains("is a directory", Assert.Throws<ArgumentException>(() => DecoderExport.MergedGguf(model, source, temp.File("out.gguf"))).Message);
        Assert.Contains("does not end in .gguf", Assert.Throws<ArgumentException>(() => DecoderExport.MergedGguf(model, source, temp.File("out.bin"))).Message);
        Assert.Contains("is the base GGUF", Assert.Throws<ArgumentException>(() => DecoderExport.MergedGguf(model, source, basePath)).Message);
        Assert.Contains("IQ2_XS", Assert.Throws<ArgumentException>(() => DecoderExport.MergedGguf(model, source, temp.File("m.gguf"), GgufTensorType.IQ2_XS)).Message);
        Assert.Contains("f32, f16 or bf16", Assert.Throws<ArgumentException>(() => DecoderExport.LoraGguf(model, source, temp.File("a.gguf"), GgufTensorType.Q8_0)).Message);
        Assert.Contains("only for a Hugging Face base", Assert.Throws<ArgumentException>(() => DecoderExport.LoraGguf(model, source, temp.File("a.gguf"), basePath: temp.File("b.gguf"))).Message);
        File.WriteAllText(temp.File("file"), "");
        Assert.Contains("is a file", Assert.Throws<ArgumentException>(() => DecoderExport.MergedHuggingFace(model, source, temp.File("file"))).Message);
        Assert.Contains("is the base model's folder", Assert.Throws<ArgumentException>(() => DecoderExport.MergedHuggingFace(model, DecoderSource.HuggingFace(HfBase(temp)), HfBase(temp))).Message);

        using var plain = LanguageModel.Load(basePath);
        Assert.Contains("no LoRA layers", Assert.Throws<ArgumentException>(() => DecoderExport.LoraGguf(plain.Model, source, temp.File("a.gguf"))).Message);

        string llamaBase = WriteBaseGguf(temp.File("llama.gguf"), "llama");
        Assert.Contains("is a llama one", Assert.Throws<ArgumentException>(() => DecoderExport.MergedGguf(model, DecoderSource.Gguf(llamaBase), temp.File("m.gguf"))).Message);
        string otherVocab = WriteBaseGguf(temp.File("other.gguf"), "qwen2", sizes: Sizes with { Vocab = 299 });
        Assert.Contains("299 tokens", Assert.Throws<ArgumentException>(() => DecoderExport.MergedGguf(model, DecoderSource.Gguf(otherVocab), temp.File("m.gguf"))).Message);

        Assert.Throws<FileNotFoundException>(() => DecoderSource.Open(temp.File("missing.gguf")));
        Assert.Contains("is a folder", Assert.Throws<ArgumentException>(() => DecoderSource.Gguf(temp.Path)).Message);
        Assert.Contains("no config.json", Assert.Throws<ArgumentException>(() => DecoderSource.HuggingFace(temp.Path)).Message);
        Assert.False(File.Exists(temp.File("a.gguf")) || File.Exists(temp.File("m.gguf")), "nothing written by a refused export");
    }

    [Fact]
    public void A_lora_export_refuses_what_the_adapter_format_cannot_carry()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "qwen2");
        var source = DecoderSource.Gguf(basePath);
        using var model = Adapted(basePath, Lora("q_proj", "k_proj"));
        var state = model.Module.state_dict();
        using (no_grad()) state["model.layers.1.self_attn.k_proj.bias"].add_(0.01f); // a trained bias
        var error = Assert.Throws<NotSupportedException>(() => DecoderExport.LoraGguf(model, source, temp.File("a.gguf")));
        Assert.Contains("model.layers.1.self_attn.k_proj.bias", error.Message);
        Assert.Contains("export the merged model", error.Message);
        Assert.False(File.Exists(temp.File("a.gguf")));
        DecoderExport.LoraGguf(model, source, temp.File("a.gguf"), checkBase: false); // the user's choice to drop it

        var layer = model.Module.named_modules().Select(m => m.module).OfType<LoraLinear>().First();
        layer.Merge();
        Assert.Contains("unmerge", Assert.Throws<InvalidOperationException>(() => DecoderExport.LoraGguf(model, source, temp.File("b.gguf"))).Message);
    }

    [Fact]
    public void A_weight_beyond_f16s_range_is_refused_as_f16_and_written_as_bf16()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "llama");
        using var model = Adapted(basePath, Lora("v_proj"));
        using (no_grad()) model.Module.state_dict()["model.layers.0.mlp.up_proj.weight"][0, 0] = tensor(1e6f);
        var error = Assert.Throws<ArgumentException>(() => DecoderExport.MergedGguf(model, DecoderSource.Gguf(basePath), temp.File("m.gguf")));
        Assert.Contains("model.layers.0.mlp.up_proj.weight", error.Message);
        DecoderExport.MergedGguf(model, DecoderSource.Gguf(basePath), temp.File("m.gguf"), GgufTensorType.BF16);
    }

    /// <summary>A Hugging Face base folder (weights and config only) of the qwen2 test model.</summary>
    static string HfBase(TestModels.TempFolder temp)
    {
        string folder = temp.File("hf-base");
        if (!Directory.Exists(folder))
            using (var plain = LanguageModel.Load(temp.File("base.gguf"))) plain.Model.Save(folder);
        return folder;
    }

    [Fact]
    public void A_prompt_method_is_refused_by_every_export()
    {
        using var temp = new TestModels.TempFolder();
        string basePath = WriteBaseGguf(temp.File("base.gguf"), "llama");
        var source = DecoderSource.Gguf(basePath);
        Assert.True(PeftRegistry.TryGet("prompt", out var method));
        using var lm = LanguageModel.Load(basePath);
        var settings = new PeftSettings { VirtualTokens = 3 };
        using var model = new SharpTune.Heads.CausalLmModel(lm.Model, method!.CreatePromptEncoder(settings, lm.Model.Shape, lm.Model.WordEmbeddings));
        foreach (var export in new Action[]
        {
            () => DecoderExport.MergedGguf(model, source, temp.File("m.gguf")),
            () => DecoderExport.LoraGguf(model, source, temp.File("a.gguf")),
            () => DecoderExport.MergedHuggingFace(model, source, temp.File("hf")),
        })
            Assert.Contains("prompt_encoder.", Assert.Throws<NotSupportedException>(export).Message);
    }
}
