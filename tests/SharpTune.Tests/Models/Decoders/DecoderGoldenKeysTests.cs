using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;

namespace SharpTune.Tests.Models.Decoders;

/// <summary>Every state-dict key and shape of the tiny models, against Hugging Face's names for the same configs.</summary>
public class DecoderGoldenKeysTests
{
    static List<string> Actual(ICausalLanguageModel model) =>
        model.Module.state_dict().Select(kv => $"{kv.Key} [{string.Join(", ", kv.Value.shape)}]").ToList();

    [Fact]
    public void Llama_keys_and_shapes_equal_Hugging_Face_LlamaForCausalLM()
    {
        using var model = TinyDecoders.Create("llama");
        var expected = new List<string> { "model.embed_tokens.weight [97, 48]" };
        for (int i = 0; i < 3; i++)
        {
            string p = $"model.layers.{i}.";
            expected.AddRange(
            [
                p + "self_attn.q_proj.weight [60, 48]", p + "self_attn.k_proj.weight [20, 48]",
                p + "self_attn.v_proj.weight [20, 48]", p + "self_attn.o_proj.weight [48, 60]",
                p + "mlp.gate_proj.weight [83, 48]", p + "mlp.up_proj.weight [83, 48]", p + "mlp.down_proj.weight [48, 83]",
                p + "input_layernorm.weight [48]", p + "post_attention_layernorm.weight [48]",
            ]);
        }
        expected.AddRange(["model.norm.weight [48]", "lm_head.weight [97, 48]"]);
        Assert.Equal(expected, Actual(model));
    }

    [Fact]
    public void Qwen2_keys_and_shapes_equal_Hugging_Face_Qwen2ForCausalLM()
    {
        using var model = TinyDecoders.Create("qwen2");
        var expected = new List<string> { "model.embed_tokens.weight [97, 48]" };
        for (int i = 0; i < 3; i++)
        {
            string p = $"model.layers.{i}.";
            expected.AddRange(
            [
                p + "self_attn.q_proj.weight [48, 48]", p + "self_attn.q_proj.bias [48]",
                p + "self_attn.k_proj.weight [24, 48]", p + "self_attn.k_proj.bias [24]",
                p + "self_attn.v_proj.weight [24, 48]", p + "self_attn.v_proj.bias [24]",
                p + "self_attn.o_proj.weight [48, 48]",
                p + "mlp.gate_proj.weight [83, 48]", p + "mlp.up_proj.weight [83, 48]", p + "mlp.down_proj.weight [48, 83]",
                p + "input_layernorm.weight [48]", p + "post_attention_layernorm.weight [48]",
            ]);
        }
        expected.Add("model.norm.weight [48]"); // tied: no lm_head.weight, as in HF's saved files
        Assert.Equal(expected, Actual(model));
    }

    [Fact]
    public void Gpt2_keys_and_shapes_equal_Hugging_Face_GPT2LMHeadModel()
    {
        using var model = TinyDecoders.Create("gpt2");
        var expected = new List<string> { "transformer.wte.weight [97, 48]", "transformer.wpe.weight [40, 48]" };
        for (int i = 0; i < 3; i++)
        {
            string p = $"transformer.h.{i}.";
            expected.AddRange(
            [
                p + "ln_1.weight [48]", p + "ln_1.bias [48]",
                p + "attn.c_attn.weight [48, 144]", p + "attn.c_attn.bias [144]",
                p + "attn.c_proj.weight [48, 48]", p + "attn.c_proj.bias [48]",
                p + "ln_2.weight [48]", p + "ln_2.bias [48]",
                p + "mlp.c_fc.weight [48, 83]", p + "mlp.c_fc.bias [83]",
                p + "mlp.c_proj.weight [83, 48]", p + "mlp.c_proj.bias [48]",
            ]);
        }
        expected.AddRange(["transformer.ln_f.weight [48]", "transformer.ln_f.bias [48]"]);
        Assert.Equal(expected, Actual(model));
    }

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    public void Info_reports_the_configs_sizes(string family)
    {
        using var model = TinyDecoders.Create(family);
        var info = model.Info;
        Assert.Equal((family, 3, 48, 6, 97), (info.Family, info.Layers, info.HiddenSize, info.Heads, info.VocabSize));
        Assert.Equal(family switch { "llama" => 2, "qwen2" => 3, "gemma" => 1, _ => 6 }, info.KeyValueHeads);
        Assert.Equal(family is "llama" or "gemma" ? 10 : 8, info.HeadDim);
        Assert.Equal(83, info.IntermediateSize);
        Assert.Equal(family != "llama", info.TiedEmbeddings);
    }

    [Fact]
    public void The_linear_factory_is_asked_for_every_block_projection_by_its_Hugging_Face_path()
    {
        var asked = new List<string>();
        var sites = new List<SharpTune.Models.LinearSite>();
        SharpTune.Models.LinearFactory recording = site =>
        {
            asked.Add($"{site.Path} {site.InFeatures}->{site.OutFeatures}{(site.Bias ? " +bias" : "")}");
            sites.Add(site);
            return DecoderLinears.Plain(site);
        };
        using var model = PretrainedDecoder.Create(TinyDecoders.Config("qwen2"), linears: recording);
        Assert.Equal(3 * 7, asked.Count);
        Assert.Equal(((SharpTune.Models.IBackboneShape)model.Shape).LinearSites, sites);
        Assert.Equal(
        [
            "model.layers.0.self_attn.q_proj 48->48 +bias", "model.layers.0.self_attn.k_proj 48->24 +bias",
            "model.layers.0.self_attn.v_proj 48->24 +bias", "model.layers.0.self_attn.o_proj 48->48",
            "model.layers.0.mlp.gate_proj 48->83", "model.layers.0.mlp.up_proj 48->83", "model.layers.0.mlp.down_proj 83->48",
        ], asked.Take(7));

        // GPT-2's Conv1D layers come through the same factory, marked transposed (weight stored (in, out)).
        sites.Clear();
        using var gpt2 = PretrainedDecoder.Create(TinyDecoders.Config("gpt2"), linears: recording);
        Assert.Equal(gpt2.Shape.LinearSites, sites);
        Assert.All(sites, s => Assert.True(s.Transposed));
        Assert.Equal(["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"], sites.Take(4).Select(s => string.Join('.', s.Path.Split('.')[^2..])));
    }
}
