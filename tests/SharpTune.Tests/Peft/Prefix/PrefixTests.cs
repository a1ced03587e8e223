using SharpTune.Models.Common;
using System.Text.Json.Nodes;
using SharpTune.Heads;
using SharpTune.Models.Bert;
using SharpTune.Peft;
using SharpTune.Peft.Prefix;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Prefix;

[Collection(PromptMethodsCollection.Name)]
public class PrefixTests
{
    static readonly IPeftMethod Prefix = PeftRegistry.Get("prefix");
    static readonly IPeftMethod V2 = PeftRegistry.Get("ptuning-v2");
    static readonly HeadOptions Head = new(TaskKind.SingleLabel, 2);
    static readonly PeftSettings Settings = new() { VirtualTokens = 5, EncoderHidden = 11 };

    [Theory]
    [InlineData("prefix")]
    [InlineData("ptuning-v2")]
    public void Each_layer_takes_its_key_then_its_value_from_the_row_as_PEFT_lays_it_out(string name)
    {
        using var model = PromptTestModels.Build(PeftRegistry.Get(name), Settings, Head);
        var module = (PrefixEncoder)model.PromptEncoder!;
        using var scope = NewDisposeScope();
        var rows = module.Output().detach().contiguous().data<float>().ToArray(); // (P, L*2*H)
        var prefixes = module.Prefixes(2);
        const int P = 5, H = 32, N = 4, D = 8, L = 2;
        Assert.Equal(L, prefixes.Count);
        for (int layer = 0; layer < L; layer++)
            foreach (var (part, slot) in new[] { (prefixes[layer].Key, 2 * layer), (prefixes[layer].Value, 2 * layer + 1) })
            {
                Assert.Equal([2L, N, P, D], part.shape); // (B, N, P, D)
                var values = part[1].contiguous().data<float>().ToArray();
                for (int n = 0; n < N; n++)
                    for (int p = 0; p < P; p++)
                        for (int d = 0; d < D; d++)
                            Assert.Equal(rows[p * L * 2 * H + slot * H + n * D + d], values[(n * P + p) * D + d]);
            }
    }

    [Theory]
    [InlineData("prefix", "prompt_encoder.transform.2.weight")]
    [InlineData("ptuning-v2", "prompt_encoder.embedding.weight")]
    public void Zero_init_gives_a_zero_prefix_that_still_trains(string name, string firstTrained)
    {
        var method = PeftRegistry.Get(name);
        using var model = PromptTestModels.Build(method, Settings with { PrefixZeroInit = true }, Head);
        using (var table = ((PromptModule)model.PromptEncoder!).Output())
            Assert.Equal(0, table.abs().max().item<float>());
        using var inputs = PromptTestModels.Inputs([2, 11, 12, 13, 3], [2, 20, 21, 3]);
        using var logits = model.forward(inputs);
        using var loss = model.Loss(logits, tensor(new long[] { 0, 1 }), inputs);
        loss.backward();
        var grad = model.named_parameters().First(p => p.name == firstTrained).parameter.grad!;
        Assert.True(grad.abs().max().item<float>() > 0, $"{firstTrained} gets no gradient");
    }

    /// <summary>
    /// What zero init really does (see <see cref="PrefixEncoder"/>): not a no-op, but every real token's attention
    /// output scaled by Z/(Z+P) per head, a factor in (0, 1) shared by all D components of that head.
    /// </summary>
    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void A_zero_prefix_scales_each_heads_attention_output_by_one_factor_below_one()
    {
        manual_seed(1);
        var attention = new BertSelfAttention(TestModels.TinyConfig, LinearFactories.Plain, "self");
        attention.eval();
        using var scope = NewDisposeScope();
        var hidden = randn(1, 6, 32);
        var zero = zeros(1, 4, 5, 8); // (B, N, P, D)
        var plain = attention.forward(hidden, null, null).view(6, 4, 8);
        var prefixed = attention.forward(hidden, null, new KeyValuePrefix(zero, zero)).view(6, 4, 8); // (T, N, D)
        // The factor of each token and head, fitted over its D components; not an elementwise ratio, which
        // near-zero components would turn kernel rounding into large errors.
        var factor = (prefixed * plain).sum(-1, keepdim: true) / (plain * plain).sum(-1, keepdim: true); // (T, N, 1)
        // Attention over T+P keys against over T keys: other kernels for the same sums.
        Tolerances.AssertClose(prefixed, plain * factor, Tolerances.DifferentKernels, "one factor per token and head");
        Assert.True(factor.max().item<float>() < 1 && factor.min().item<float>() > 0);
    }

    [Fact]
    public void P_tuning_v2_drops_prefix_entries_only_while_training_and_prefix_tuning_never()
    {
        using var v2 = PromptTestModels.Build(V2, Settings with { PrefixDropout = 0.5 }, Head);
        using var prefix = PromptTestModels.Build(Prefix, Settings with { PrefixDropout = 0.5 }, Head);
        using var scope = NewDisposeScope();
        var v2Module = (PrefixEncoder)v2.PromptEncoder!;
        var prefixModule = (PrefixEncoder)prefix.PromptEncoder!;
        Assert.True(v2Module.Prefixes(1)[0].Key.eq(v2Module.Prefixes(1)[0].Key).all().item<bool>()); // eval: none
        v2.train();
        prefix.train();
        var dropped = v2Module.Prefixes(1)[0].Key;
        Assert.True(dropped.eq(0).any().item<bool>(), "training drops entries");
        Assert.False(dropped.eq(v2Module.Prefixes(1)[0].Key).all().item<bool>(), "fresh masks each call");
        Assert.True(prefixModule.Prefixes(1)[0].Key.eq(prefixModule.Prefixes(1)[0].Key).all().item<bool>());
    }

    [Fact]
    public void Both_configs_have_PEFTs_PREFIX_TUNING_fields_and_prefix_projection_tells_them_apart()
    {
        using var temp = new TestModels.TempFolder();
        var zeroPrefix = Settings with { PrefixZeroInit = true };
        using (var model = PromptTestModels.Build(Prefix, zeroPrefix, Head)) Prefix.SaveAdapter(temp.File("prefix"), model, zeroPrefix, "tiny-bert");
        using (var model = PromptTestModels.Build(V2, Settings, Head)) V2.SaveAdapter(temp.File("v2"), model, Settings, "tiny-bert");
        var prefixConfig = AdapterFiles.ReadConfig(temp.File("prefix"));
        var v2Config = AdapterFiles.ReadConfig(temp.File("v2"));
        const string Common = """
              "base_model_name_or_path": "tiny-bert",
              "inference_mode": true,
              "modules_to_save": ["classifier", "score"],
              "num_attention_heads": 4,
              "num_layers": 2,
              "num_transformer_submodules": 1,
              "num_virtual_tokens": 5,
              "peft_type": "PREFIX_TUNING",
              "revision": null,
              "task_type": "SEQ_CLS",
              "token_dim": 32,
            """;
        var expectedPrefix = JsonNode.Parse($$"""{ {{Common}} "encoder_hidden_size": 11, "init_weights": "zero", "prefix_projection": true }""");
        var expectedV2 = JsonNode.Parse($$"""{ {{Common}} "encoder_hidden_size": 32, "init_weights": null, "prefix_projection": false }""");
        Assert.True(JsonNode.DeepEquals(expectedPrefix, prefixConfig), prefixConfig.ToJsonString());
        Assert.True(JsonNode.DeepEquals(expectedV2, v2Config), v2Config.ToJsonString());

        Assert.Same(Prefix, PeftRegistry.ForAdapter(prefixConfig, "prefix"));
        Assert.Same(V2, PeftRegistry.ForAdapter(v2Config, "v2"));
        var read = Prefix.ReadSettings(prefixConfig, "prefix");
        Assert.Equal((5, (int?)11, true), (read.VirtualTokens, read.EncoderHidden, read.PrefixZeroInit));
        // P-tuning v2's dropout is not a PEFT field: it comes back as the default.
        Assert.Equal(new PeftSettings().PrefixDropout, V2.ReadSettings(v2Config, "v2").PrefixDropout);

        Assert.Throws<InvalidDataException>(() => Prefix.ReadSettings(v2Config, "v2"));
        using var prefixModel = PromptTestModels.Build(Prefix, Settings, Head);
        var error = Assert.Throws<InvalidDataException>(() => Prefix.LoadAdapter(temp.File("v2"), prefixModel));
        Assert.Contains("adapter_config.json", error.Message);
    }
}
