using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Llama;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders;

/// <summary>Hugging Face folders in and out: save/load round trips, shards, bf16, and errors that name the key.</summary>
public class PretrainedDecoderTests
{
    /// <summary>
    /// bf16 weights and bf16 activations through the whole network, residual stream included (transformers'
    /// <c>torch_dtype=bfloat16</c>), against fp32: unlike BERT's mixed precision (<see cref="Tolerances.Bf16"/>, residual
    /// adds and LayerNorm in fp32) every product, add and norm output rounds to 8 bits, about 20 roundings of up to
    /// 2^-9 along each path through 3 layers: a random walk of about 1 % relative, 3 % at its worst element. Relative to
    /// the values' scale.
    /// </summary>
    const double Bf16WholeNetwork = 5 * Tolerances.Bf16;

    static Dictionary<string, Tensor> Weights(ICausalLanguageModel model) => model.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    public void Save_then_load_gives_identical_logits(string family)
    {
        using var folder = new TinyDecoders.TempFolder();
        using var model = TinyDecoders.Create(family);
        model.Save(folder.Path);
        using var loaded = PretrainedDecoder.Load(folder.Path);
        using var ids = TinyDecoders.Ids(2, 6);
        using var expected = model.Forward(ids);
        using var actual = loaded.Forward(ids);
        // The same weights through the same kernels.
        Tolerances.AssertClose(expected, actual, Tolerances.Exact, "reloaded");
        Assert.False(loaded.Module.training);

        var saved = PretrainedDecoder.ReadConfig(Path.Combine(folder.Path, "config.json"));
        Assert.Equal(family, saved["model_type"]!.GetValue<string>());
        Assert.Equal("float32", saved["torch_dtype"]!.GetValue<string>());
        var names = SafeTensors.ReadHeader(Path.Combine(folder.Path, "model.safetensors")).Entries.Select(e => e.Name).ToList();
        Assert.Equal(family == "llama", names.Contains("lm_head.weight")); // tied heads are not written, as transformers does
    }

    [Fact]
    public void Saved_config_keeps_fields_the_record_does_not_model()
    {
        using var folder = new TinyDecoders.TempFolder();
        var config = TinyDecoders.Config("llama");
        config["custom_note"] = "kept";
        using var model = TinyDecoders.Create("llama", config: config);
        model.Save(folder.Path);
        var saved = PretrainedDecoder.ReadConfig(Path.Combine(folder.Path, "config.json"));
        Assert.Equal("kept", saved["custom_note"]!.GetValue<string>());
        Assert.Equal("llama3", saved["rope_scaling"]!["rope_type"]!.GetValue<string>());
        Assert.Equal(2, saved["eos_token_id"]!.AsArray().Count);
        Assert.Equal("LlamaForCausalLM", saved["architectures"]![0]!.GetValue<string>());
    }

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Bf16_load_holds_bf16_weights_and_is_close_to_float32(string family)
    {
        using var folder = new TinyDecoders.TempFolder();
        using var model = TinyDecoders.Create(family);
        model.Save(folder.Path);
        using var bf16 = PretrainedDecoder.Load(folder.Path, ScalarType.BFloat16);
        Assert.All(bf16.Module.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        using var ids = TinyDecoders.Ids(2, 6);
        using var expected = model.Forward(ids);
        using var actual = bf16.Forward(ids);
        Assert.Equal(ScalarType.Float32, actual.dtype);
        Tolerances.AssertClose(expected, actual, Bf16WholeNetwork, "bf16");

        using var again = new TinyDecoders.TempFolder();
        bf16.Save(again.Path);
        Assert.Equal("bfloat16", PretrainedDecoder.ReadConfig(Path.Combine(again.Path, "config.json"))["torch_dtype"]!.GetValue<string>());
        Assert.All(SafeTensors.ReadHeader(Path.Combine(again.Path, "model.safetensors")).Entries, e => Assert.Equal("BF16", e.DType));
        using var widened = PretrainedDecoder.Load(again.Path);                  // a bf16 file into fp32 weights, as most Hub files are read
        Assert.All(widened.Module.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        using var widenedLogits = widened.Forward(ids);
        Tolerances.AssertClose(expected, widenedLogits, Bf16WholeNetwork, "bf16 file, fp32 weights");
    }

    [Fact]
    public void Sharded_folders_load_through_their_index()
    {
        using var folder = new TinyDecoders.TempFolder();
        using var model = TinyDecoders.Create("qwen2");
        model.Save(folder.Path);
        var weights = Weights(model);
        var first = weights.Keys.Where(k => k.StartsWith("model.layers.0.", StringComparison.Ordinal)).ToHashSet();
        File.Delete(Path.Combine(folder.Path, "model.safetensors"));
        SafeTensors.Save(Path.Combine(folder.Path, "model-00001-of-00002.safetensors"), weights.Where(kv => first.Contains(kv.Key)).ToDictionary());
        SafeTensors.Save(Path.Combine(folder.Path, "model-00002-of-00002.safetensors"), weights.Where(kv => !first.Contains(kv.Key)).ToDictionary());
        var map = new JsonObject(weights.Keys.Select(k =>
            KeyValuePair.Create(k, (JsonNode?)(first.Contains(k) ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors"))));
        File.WriteAllText(Path.Combine(folder.Path, "model.safetensors.index.json"), new JsonObject { ["weight_map"] = map }.ToJsonString());

        using var loaded = PretrainedDecoder.Load(folder.Path);
        using var ids = TinyDecoders.Ids(1, 5);
        using var expected = model.Forward(ids);
        using var actual = loaded.Forward(ids);
        Tolerances.AssertClose(expected, actual, Tolerances.Exact, "sharded");
    }

    [Fact]
    public void From_state_dict_takes_a_config_and_named_tensors()
    {
        using var model = TinyDecoders.Create("llama");
        var tensors = Weights(model).Select(kv => (kv.Key, kv.Value));
        using var built = PretrainedDecoder.FromStateDict(model.ToConfigJson(), tensors, source: "test.gguf");
        using var ids = TinyDecoders.Ids(1, 5);
        using var expected = model.Forward(ids);
        using var actual = built.Forward(ids);
        Tolerances.AssertClose(expected, actual, Tolerances.Exact, "from state dict");
    }

    [Fact]
    public void Gpt2_files_saved_from_GPT2Model_load_without_prefix_or_mask_buffers()
    {
        using var model = TinyDecoders.Create("gpt2");
        var tensors = Weights(model).Select(kv => (kv.Key["transformer.".Length..], kv.Value)).ToList();
        using var maskBuffer = ones(1, 1, 40, 40);
        tensors.Add(("h.0.attn.bias", maskBuffer));
        tensors.Add(("lm_head.weight", Weights(model)["transformer.wte.weight"]));
        using var built = PretrainedDecoder.FromStateDict(model.ToConfigJson(), tensors);
        using var ids = TinyDecoders.Ids(1, 5);
        using var expected = model.Forward(ids);
        using var actual = built.Forward(ids);
        Tolerances.AssertClose(expected, actual, Tolerances.Exact, "GPT2Model keys");
    }

    /// <summary>
    /// A method's own tensors are not in a pretrained folder: LoRA's sit one module deeper (<c>q_proj.lora_A.weight</c>),
    /// IA3's vector beside the weight (<c>k_proj.ia3_l</c>). Both load, and the base weights are the saved ones.
    /// </summary>
    [Theory]
    [InlineData("llama", "lora")]
    [InlineData("llama", "ia3")]
    [InlineData("qwen2", "ia3")]
    [InlineData("gpt2", "ia3")]
    public void A_folder_loads_with_a_methods_linear_layers_built_in(string family, string method)
    {
        using var folder = new TinyDecoders.TempFolder();
        using var model = TinyDecoders.Create(family);
        model.Save(folder.Path);
        var peft = SharpTune.Peft.PeftRegistry.Get(method);
        var settings = new SharpTune.Peft.PeftSettings { LoraTargets = [SharpTune.Peft.LinearTargets.AllLinear] };
        var shape = SharpTune.Models.Decoders.LanguageModel.ReadConfig(folder.Path);
        using var loaded = PretrainedDecoder.Load(folder.Path, linears: peft.Linears(settings, shape, SharpTune.Models.Decoders.Common.DecoderLinears.Plain));
        var own = loaded.Module.state_dict().Keys.Where(k => k.Contains(method == "lora" ? ".lora_" : ".ia3_l")).ToList();
        Assert.NotEmpty(own);
        var expected = Weights(model);
        foreach (var (key, value) in loaded.Module.state_dict().Where(kv => expected.ContainsKey(kv.Key)))
            Tolerances.AssertClose(expected[key], value, Tolerances.Exact, key);
    }

    [Fact]
    public void A_missing_weight_is_an_error_naming_it()
    {
        using var model = TinyDecoders.Create("llama");
        var tensors = Weights(model).Where(kv => kv.Key != "model.layers.1.mlp.up_proj.weight").Select(kv => (kv.Key, kv.Value));
        var error = Assert.Throws<InvalidDataException>(() => PretrainedDecoder.FromStateDict(model.ToConfigJson(), tensors, source: "file.safetensors"));
        Assert.Contains("file.safetensors", error.Message);
        Assert.Contains("model.layers.1.mlp.up_proj.weight", error.Message);
    }

    [Fact]
    public void A_weight_of_the_wrong_shape_is_an_error_naming_it_and_both_shapes()
    {
        using var model = TinyDecoders.Create("llama");
        using var wrong = zeros(30, 48);
        var tensors = Weights(model).Select(kv => (kv.Key, kv.Key == "model.layers.2.self_attn.k_proj.weight" ? wrong : kv.Value));
        var error = Assert.Throws<InvalidDataException>(() => PretrainedDecoder.FromStateDict(model.ToConfigJson(), tensors));
        Assert.Contains("model.layers.2.self_attn.k_proj.weight", error.Message);
        Assert.Contains("[30, 48]", error.Message);
        Assert.Contains("[20, 48]", error.Message);
    }

    [Fact]
    public void Qwen2_weights_under_a_llama_config_are_refused_by_key()
    {
        using var qwen = TinyDecoders.Create("qwen2");
        var config = qwen.ToConfigJson();
        config["model_type"] = "llama";
        var tensors = Weights(qwen).Select(kv => (kv.Key, kv.Value));
        var error = Assert.Throws<InvalidDataException>(() => PretrainedDecoder.FromStateDict(config, tensors));
        Assert.Contains("model.layers.0.self_attn.q_proj.bias", error.Message);
    }

    [Fact]
    public void An_unknown_model_type_names_it_and_the_supported_ones()
    {
        var config = new JsonObject { ["model_type"] = "falcon", ["hidden_size"] = 8 };
        var error = Assert.Throws<InvalidDataException>(() => PretrainedDecoder.Create(config));
        Assert.Contains("'falcon'", error.Message);
        foreach (var type in new[] { "llama", "mistral", "qwen2", "gpt2" }) Assert.Contains(type, error.Message);
        Assert.Throws<InvalidDataException>(() => DecoderFamilies.ForGgufArchitecture("falcon"));
    }

    [Fact]
    public void Registry_maps_model_types_and_gguf_architectures_and_refuses_duplicates()
    {
        Assert.Equal("llama", DecoderFamilies.ForModelType("mistral").Name);
        Assert.Equal("qwen2", DecoderFamilies.ForGgufArchitecture("qwen2").Name);
        Assert.Equal("gpt2", DecoderFamilies.ForGgufArchitecture("gpt2").Name);
        var duplicate = new DecoderFamily<LlamaConfig>("llama-again", ["llama"], LlamaFamily.Descriptor.Gguf, (c, l, s) => new LlamaForCausalLM(c, l, s), LlamaCheckpointKeys.Map);
        var error = Assert.Throws<InvalidOperationException>(() => DecoderFamilies.Register(duplicate));
        Assert.Contains("'llama'", error.Message);
    }

    [Fact]
    public void Mistral_configs_build_the_llama_layout()
    {
        var config = TinyDecoders.Config("llama");
        config["model_type"] = "mistral";
        config["sliding_window"] = null;
        using var model = TinyDecoders.Create("llama", config: config);
        Assert.IsType<LlamaForCausalLM>(model);
        Assert.Equal("llama", model.Info.Family);
        Assert.Equal("mistral", model.ToConfigJson()["model_type"]!.GetValue<string>());
    }
}
