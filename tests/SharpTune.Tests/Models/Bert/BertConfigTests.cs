using SharpTune.Models.Bert;

namespace SharpTune.Tests.Models.Bert;

public class BertConfigTests
{
    [Fact]
    public void A_Hugging_Face_config_loads_unchanged_and_round_trips_unknown_fields()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("config.json");
        File.WriteAllText(path, """
            {"architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": false,
             "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 384, "initializer_range": 0.02,
             "intermediate_size": 1536, "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
             "num_attention_heads": 12, "num_hidden_layers": 6, "pad_token_id": 0, "position_embedding_type": "absolute",
             "transformers_version": "4.8.2", "type_vocab_size": 2, "use_cache": true, "vocab_size": 30522}
            """);
        var config = BertConfig.Load(path);
        Assert.Equal(384, config.HiddenSize);
        Assert.Equal(32, config.HeadSize);
        Assert.Equal(6, config.NumHiddenLayers);
        Assert.Contains("\"transformers_version\": \"4.8.2\"", config.ToJson());
        Assert.Contains("\"hidden_size\": 384", config.ToJson());
    }

    [Theory]
    [InlineData("""{"hidden_size": 30, "num_attention_heads": 4}""", "num_attention_heads")]
    [InlineData("""{"vocab_size": 0}""", "vocab_size")]
    [InlineData("""{"hidden_dropout_prob": 1.5}""", "hidden_dropout_prob")]
    [InlineData("""{"hidden_act": "mish"}""", "hidden_act")]
    [InlineData("""{"model_type": "gpt2"}""", "model_type")]
    [InlineData("""{"position_embedding_type": "relative_key"}""", "position_embedding_type")]
    public void Invalid_fields_are_named(string json, string field)
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("config.json");
        File.WriteAllText(path, json);
        var error = Assert.Throws<InvalidDataException>(() => BertConfig.Load(path));
        Assert.Contains(field, error.Message);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Malformed_json_and_missing_file_are_clear_errors()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("config.json");
        File.WriteAllText(path, "{ \"hidden_size\": ");
        Assert.Contains(path, Assert.Throws<InvalidDataException>(() => BertConfig.Load(path)).Message);
        Assert.Throws<FileNotFoundException>(() => BertConfig.Load(temp.File("absent.json")));
    }
}
