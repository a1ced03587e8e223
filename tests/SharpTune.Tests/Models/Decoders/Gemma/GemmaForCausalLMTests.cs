using System.Text.Json.Nodes;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Gemma;
using SharpTune.Models.Decoders.Gguf;
using SharpTune.Tests.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders.Gemma;

/// <summary>
/// Gemma (1) against HF's <c>GemmaForCausalLM</c> written out independently in float64 (norms x·(1 + w), embeddings
/// times √hidden_size, GeGLU with the tanh GELU, head_dim 10 over 6 query heads and one key/value head), its keys, its
/// config rules, one set of weights read from a Hugging Face folder and from a GGUF file (norms written as 1 + w), and
/// LoRA training over it.
/// </summary>
public class GemmaForCausalLMTests
{
    /// <summary>Logits (T, V) of HF Gemma for one sequence, from the state dict alone.</summary>
    static Tensor Reference(IReadOnlyDictionary<string, Tensor> sd, long[] ids, int layers, int heads, int kvHeads, int headDim, double eps, double theta)
    {
        Tensor W(string key) => sd[key].to(ScalarType.Float64);
        Tensor Linear(Tensor x, string prefix) => x.matmul(W(prefix + ".weight").t());
        Tensor Rms(Tensor x, string key) => x / (x.pow(2).mean([-1], keepdim: true) + eps).sqrt() * (1 + W(key));
        Tensor Gelu(Tensor x) => 0.5 * x * (1 + (Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x.pow(3))).tanh());
        long t = ids.Length;
        int half = headDim / 2;
        var inverse = Enumerable.Range(0, half).Select(i => Math.Pow(theta, -2.0 * i / headDim)).ToArray();
        var angles = arange(t, dtype: ScalarType.Float64).unsqueeze(1) * tensor(inverse).unsqueeze(0);   // (T, D/2)
        var (cos, sin) = (angles.cos(), angles.sin());
        Tensor Rotate(Tensor x) => cat([x[.., ..half] * cos - x[.., half..] * sin, x[.., half..] * cos + x[.., ..half] * sin], 1);

        var embedding = W("model.embed_tokens.weight");
        var hidden = embedding.index_select(0, tensor(ids)) * Math.Sqrt(embedding.shape[1]);          // (T, H)
        for (int l = 0; l < layers; l++)
        {
            string p = $"model.layers.{l}.";
            var h = Rms(hidden, p + "input_layernorm.weight");
            var (q, k, v) = (Linear(h, p + "self_attn.q_proj"), Linear(h, p + "self_attn.k_proj"), Linear(h, p + "self_attn.v_proj"));
            var contexts = new List<Tensor>();
            for (int head = 0; head < heads; head++)
            {
                int group = head / (heads / kvHeads);
                var qh = Rotate(q[.., (head * headDim)..((head + 1) * headDim)]);
                var kh = Rotate(k[.., (group * headDim)..((group + 1) * headDim)]);
                var vh = v[.., (group * headDim)..((group + 1) * headDim)];
                var scores = qh.matmul(kh.t()) / Math.Sqrt(headDim);
                scores = scores.masked_fill(ones(t, t, ScalarType.Bool).triu(1), double.NegativeInfinity);
                contexts.Add(scores.softmax(-1).matmul(vh));
            }
            hidden = hidden + Linear(cat(contexts, 1), p + "self_attn.o_proj");
            h = Rms(hidden, p + "post_attention_layernorm.weight");
            hidden = hidden + Linear(Gelu(Linear(h, p + "mlp.gate_proj")) * Linear(h, p + "mlp.up_proj"), p + "mlp.down_proj");
        }
        return Rms(hidden, "model.norm.weight").matmul(embedding.t());
    }

    /// <summary>The tiny Gemma with its norm weights moved off zero, so the one offset shows.</summary>
    static ICausalLanguageModel Tiny()
    {
        var model = TinyDecoders.Create("gemma");
        using var noGrad = no_grad();
        foreach (var (name, parameter) in model.Module.named_parameters().Where(p => p.name.EndsWith("norm.weight", StringComparison.Ordinal)))
            parameter.uniform_(-0.5, 0.5);
        return model;
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Logits_equal_an_independent_float64_implementation()
    {
        using var model = Tiny();
        var sd = model.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        long[] ids = [5, 91, 0, 33, 33, 17, 64, 2, 80];
        var info = model.Info;
        Assert.Equal(("gemma", 6, 1, 10, true), (info.Family, info.Heads, info.KeyValueHeads, info.HeadDim, info.TiedEmbeddings));
        using var expected = Reference(sd, ids, info.Layers, info.Heads, info.KeyValueHeads, info.HeadDim, 1e-6, 10000);
        using var actual = model.Forward(tensor(ids).view(1, -1));
        Tolerances.AssertClose(expected, actual[0], Tolerances.DifferentKernelsThroughNetwork, "gemma against the float64 reference");
    }

    [Fact]
    public void Keys_and_shapes_are_hugging_faces()
    {
        using var model = TinyDecoders.Create("gemma");
        var keys = model.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        Assert.Equal(1 + 3 * 9 + 1, keys.Count);                                         // no lm_head: tied
        Assert.Equal([97L, 48], keys["model.embed_tokens.weight"]);
        Assert.Equal([60L, 48], keys["model.layers.2.self_attn.q_proj.weight"]);
        Assert.Equal([10L, 48], keys["model.layers.2.self_attn.k_proj.weight"]);
        Assert.Equal([48L, 60], keys["model.layers.0.self_attn.o_proj.weight"]);
        Assert.Equal([48L, 83], keys["model.layers.1.mlp.down_proj.weight"]);
        Assert.Equal([48L], keys["model.norm.weight"]);
        // HF initialises Gemma's norm weights to zeros: the offset from one.
        Assert.Equal(0, model.Module.state_dict()["model.layers.0.input_layernorm.weight"].abs().max().item<float>());
    }

    [Fact]
    public void Config_takes_hidden_activation_first_and_refuses_what_gemma_is_not()
    {
        var config = TinyDecoders.Config("gemma");
        var parsed = (GemmaConfig)DecoderFamilies.ForConfig(config).ParseConfig(config, "config.json");
        Assert.Equal("gelu_pytorch_tanh", parsed.MlpActivation);
        Assert.Equal(Math.Sqrt(48), parsed.EmbeddingScale);
        Assert.Equal((256, true, "gemma"), (new GemmaConfig().HeadDim, new GemmaConfig().TieWordEmbeddings, new GemmaConfig().ModelType));

        config.Remove("hidden_activation");                                             // Gemma 1.0's files: hidden_act "gelu" alone
        Assert.Equal("gelu_pytorch_tanh", ((GemmaConfig)DecoderFamilies.ForConfig(config).ParseConfig(config, "config.json")).MlpActivation);
        config["hidden_act"] = "gelu_new";
        Assert.Equal("gelu_new", ((GemmaConfig)DecoderFamilies.ForConfig(config).ParseConfig(config, "config.json")).MlpActivation);

        config["hidden_activation"] = "silu";
        var activation = Assert.Throws<InvalidDataException>(() => DecoderFamilies.ForConfig(config).ParseConfig(config, "config.json"));
        Assert.Contains("config.json: hidden_activation 'silu' is not supported", activation.Message);

        config = TinyDecoders.Config("gemma");
        config["tie_word_embeddings"] = false;
        var untied = Assert.Throws<InvalidDataException>(() => DecoderFamilies.ForConfig(config).ParseConfig(config, "config.json"));
        Assert.Contains("tie_word_embeddings", untied.Message);
    }

    [Fact]
    public void The_gguf_table_writes_head_dim_and_norms_plus_one_and_permutes_nothing()
    {
        var config = DecoderFamilies.ForModelType("gemma").ParseConfig(TinyDecoders.Config("gemma"), "test");
        var table = DecoderFamilies.ForGgufArchitecture("gemma").Gguf;
        var metadata = table.Metadata(config).ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.Equal(10u, metadata["gemma.attention.key_length"]);
        Assert.Equal(10u, metadata["gemma.attention.value_length"]);
        Assert.Equal(1u, metadata["gemma.attention.head_count_kv"]);
        var tensors = table.Tensors(config);
        Assert.All(tensors.Where(t => t.HfKey.EndsWith("norm.weight", StringComparison.Ordinal)), t => Assert.Equal(GgufTensorTransform.PlusOne, t.Transform));
        Assert.Equal(3 * 2 + 1, tensors.Count(t => t.Transform == GgufTensorTransform.PlusOne));
        Assert.DoesNotContain(tensors, t => t.Transform == GgufTensorTransform.PermutedRows);
        Assert.DoesNotContain(tensors, t => t.GgufName == "output.weight");
    }

    [Fact]
    public void A_hugging_face_folder_and_a_gguf_of_the_same_weights_give_the_same_logits()
    {
        var sizes = new TinyDecoderSizes(Vocab: 99, Hidden: 32, Layers: 2, Heads: 4, KvHeads: 2, Intermediate: 37, Positions: 64, HeadDimension: 6);
        var hf = GemmaTestModels.HfGemma(sizes);
        using var temp = new TestModels.TempFolder();
        string gguf = temp.File("gemma.gguf"), folder = temp.File("gemma-hf");
        GemmaTestModels.WriteGemma(gguf, sizes, hf);

        var map = GgufModelMap.Open(gguf);
        var config = map.Config;
        Assert.Equal(("gemma", "GemmaForCausalLM", 6L, true), ((string)config["model_type"]!, (string)config["architectures"]![0]!,
            (long)config["head_dim"]!, (bool)config["tie_word_embeddings"]!));
        foreach (var (key, value) in map.ReadTensors())
            using (value)
                Tolerances.AssertClose(hf[key], value, Tolerances.Rounding, key);       // norms: the file's 1 + w read back as w

        using (var fromFolderWeights = PretrainedDecoder.FromStateDict(config, hf.Select(kv => (kv.Key, kv.Value)), ScalarType.Float32, "test"))
            fromFolderWeights.Save(folder);
        Assert.Equal("gemma", JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "config.json")))!["model_type"]!.GetValue<string>());
        using var fromFolder = PretrainedDecoder.Load(folder);
        using var fromGguf = LanguageModel.Load(gguf);
        Assert.IsType<GemmaForCausalLM>(fromGguf.Model);
        using var noGrad = no_grad();
        using var ids = tensor(new long[] { 1, 17, 60, 5, 98, 42, 3 }).unsqueeze(0);
        Tolerances.AssertClose(fromFolder.Forward(ids), fromGguf.Model.Forward(ids), Tolerances.Rounding, "folder against GGUF");
    }

    [Fact]
    public void Lora_over_gemma_trains_its_adapters_only()
    {
        using var model = DecoderTraining.Create("gemma", lora: true);
        var before = model.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var trainable = model.Module.parameters().Where(p => p.requires_grad).ToList();
        Assert.NotEmpty(trainable);
        using var optimizer = optim.AdamW(trainable, lr: 1e-2);
        using var ids = TinyDecoders.Ids(2, 12);
        float first = 0, last = 0;
        for (int step = 0; step < 8; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = DecoderTraining.FullLogitsLoss(model, ids);
            loss.backward();
            optimizer.step();
            last = loss.item<float>();
            if (step == 0) first = last;
        }
        Assert.True(last < 0.9 * first, $"loss {first} -> {last}");
        foreach (var (key, value) in model.Module.state_dict())
        {
            bool changed = !value.eq(before[key]).all().item<bool>();
            Assert.True(changed == key.Contains(".lora_", StringComparison.Ordinal), $"{key} changed: {changed}");
        }
    }
}
