using System.Text.Json.Nodes;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Llama;

namespace SharpTune.Tests.Models.Decoders;

/// <summary>Configs load from Hugging Face JSON unchanged and reject bad values with messages that name the field.</summary>
public class DecoderConfigTests
{
    static string ErrorFor(string family, Action<JsonObject> change)
    {
        var config = TinyDecoders.Config(family);
        change(config);
        return Assert.Throws<InvalidDataException>(() => DecoderFamilies.ForConfig(config).ParseConfig(config, "my/config.json")).Message;
    }

    [Theory]
    [InlineData("llama", "hidden_size", 0)]
    [InlineData("llama", "num_key_value_heads", 4)]
    [InlineData("llama", "rms_norm_eps", -1)]
    [InlineData("llama", "eos_token_id", 97)]
    [InlineData("llama", "num_hidden_layers", 0)]
    [InlineData("qwen2", "num_attention_heads", 0)]
    [InlineData("qwen2", "rope_theta", 0)]
    [InlineData("gpt2", "n_head", 5)]
    [InlineData("gpt2", "n_embd", -3)]
    [InlineData("gpt2", "attn_pdrop", 1)]
    public void A_bad_value_is_an_error_naming_the_field_and_file(string family, string field, int value)
    {
        string message = ErrorFor(family, c => c[field] = value);
        Assert.Contains("my/config.json", message);
        Assert.Contains(field, message);
    }

    [Fact]
    public void Rope_scaling_errors_name_the_nested_field()
    {
        Assert.Contains("rope_scaling.low_freq_factor", ErrorFor("llama", c => c["rope_scaling"]!.AsObject().Remove("low_freq_factor")));
        Assert.Contains("rope_scaling.rope_type 'yarn'", ErrorFor("llama", c => c["rope_scaling"]!["rope_type"] = "yarn"));
    }

    [Fact]
    public void Qwen2_sliding_window_is_refused_only_when_turned_on()
    {
        Assert.Contains("use_sliding_window", ErrorFor("qwen2", c => c["use_sliding_window"] = true));
    }

    [Fact]
    public void A_json_type_error_names_the_file()
    {
        Assert.Contains("my/config.json", ErrorFor("llama", c => c["hidden_size"] = "wide"));
        Assert.Contains("eos_token_id", ErrorFor("qwen2", c => c["eos_token_id"] = new JsonArray(1, "two")));
    }

    [Fact]
    public void Absent_fields_take_transformers_defaults()
    {
        var config = new JsonObject { ["model_type"] = "llama", ["hidden_size"] = 64, ["num_attention_heads"] = 4, ["eos_token_id"] = 2 };
        var parsed = (LlamaConfig)DecoderFamilies.ForConfig(config).ParseConfig(config, "config");
        Assert.Equal((4, 16, 10000.0, false), (parsed.KeyValueHeads, parsed.HeadDim, parsed.RopeTheta, parsed.TieWordEmbeddings));
        Assert.Equal([2], parsed.EosTokenIds);
        var gpt2 = new JsonObject { ["model_type"] = "gpt2", ["n_embd"] = 48, ["n_head"] = 6 };
        Assert.Equal(192, DecoderFamilies.ForConfig(gpt2).ParseConfig(gpt2, "config").Info.IntermediateSize);
    }

    [Fact]
    public void Legacy_type_key_of_rope_scaling_is_read()
    {
        var config = TinyDecoders.Config("llama");
        var scaling = config["rope_scaling"]!.AsObject();
        scaling.Remove("rope_type");
        scaling["type"] = "llama3";
        var parsed = (LlamaConfig)DecoderFamilies.ForConfig(config).ParseConfig(config, "config");
        Assert.Equal("llama3", parsed.RopeScaling!.Kind);
    }

    [Fact]
    public void Transformers_5_rope_parameters_give_the_same_model_as_rope_theta_and_rope_scaling()
    {
        var config = TinyDecoders.Config("llama");
        var scaling = config["rope_scaling"]!.AsObject();
        config.Remove("rope_scaling");
        config.Remove("rope_theta");
        scaling["rope_theta"] = 10000.0;
        config["rope_parameters"] = scaling;
        using var legacy = TinyDecoders.Create("llama");
        using var modern = TinyDecoders.Create("llama", config: config);
        using var ids = TinyDecoders.Ids(1, 7);
        using var expected = legacy.Forward(ids);
        using var actual = modern.Forward(ids);
        // The same seed, weights and frequencies.
        Tolerances.AssertClose(expected, actual, Tolerances.Exact, "rope_parameters");
        Assert.Contains("rope_parameters.factor", ErrorFor("llama", c =>
        {
            c.Remove("rope_scaling");
            c["rope_parameters"] = new JsonObject { ["rope_type"] = "linear", ["rope_theta"] = 10000.0 };
        }));
    }
}
