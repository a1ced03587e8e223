using SharpTune.Tokenization.Decoders;

namespace SharpTune.Tests.Tokenization.Decoders;

/// <summary>Bad files fail with messages that name the file and the field; special-token rules come from the files.</summary>
public class LoaderErrorTests
{
    static string WriteJson(TestModels.TempFolder folder, string json, string? config = null)
    {
        File.WriteAllText(folder.File("tokenizer.json"), json);
        if (config is not null) File.WriteAllText(folder.File("tokenizer_config.json"), config);
        return folder.File("tokenizer.json");
    }

    const string Decoder = "\"decoder\": {\"type\": \"ByteLevel\"}";

    [Theory]
    [InlineData("""{"model": {"type": "BPE", "merges": []}, "decoder": {"type": "ByteLevel"}}""", "model.vocab")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b", "ab"]}, "decoder": {"type": "ByteLevel"}}""", "model.merges[1]")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}, "decoder": {"type": "ByteLevel"}}""", "model.merges[0]")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}, "decoder": {"type": "ByteLevel"}}""", "model.vocab['a']")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"content": "x"}], "decoder": {"type": "ByteLevel"}}""", "added_tokens[0].id")]
    [InlineData("""{"decoder": {"type": "ByteLevel"}}""", "'model' is missing")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {}, "merges": []""", "not valid JSON")]
    public void Malformed_tokenizer_json_names_the_field(string json, string field)
    {
        using var folder = new TestModels.TempFolder();
        var path = WriteJson(folder, json);
        var e = Assert.Throws<InvalidDataException>(() => DecoderTokenizers.FromHuggingFace(folder.Path));
        Assert.Contains(path, e.Message);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void Unsupported_model_and_pre_tokenizer_are_named()
    {
        using var folder = new TestModels.TempFolder();
        WriteJson(folder, """{"model": {"type": "Unigram", "vocab": []}}""");
        Assert.Contains("model.type is 'Unigram'", Assert.Throws<NotSupportedException>(() => DecoderTokenizers.FromHuggingFace(folder.Path)).Message);

        WriteJson(folder, """{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "continuing_subword_prefix": "##"}}""");
        Assert.Contains("model.continuing_subword_prefix is '##'", Assert.Throws<NotSupportedException>(() => DecoderTokenizers.FromHuggingFace(folder.Path)).Message);

        WriteJson(folder, """{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Punctuation"}]}, """ + Decoder + "}");
        var e = Assert.Throws<NotSupportedException>(() => DecoderTokenizers.FromHuggingFace(folder.Path));
        Assert.Contains("pre_tokenizer.pretokenizers[0].type 'Punctuation'", e.Message);
    }

    [Fact]
    public void Missing_folder_file_and_unknown_config_token_are_named()
    {
        using var folder = new TestModels.TempFolder();
        Assert.Contains("tokenizer.json not found", Assert.Throws<FileNotFoundException>(() => DecoderTokenizers.FromHuggingFace(folder.Path)).Message);

        WriteJson(folder, """{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, """ + Decoder + "}", """{"bos_token": "<s>"}""");
        var e = Assert.Throws<InvalidDataException>(() => DecoderTokenizers.FromHuggingFace(folder.Path));
        Assert.Contains("tokenizer_config.json", e.Message);
        Assert.Contains("bos_token '<s>'", e.Message);
    }

    [Fact]
    public void Bad_gguf_data_is_named_by_key()
    {
        string[] tokens = ["a", "b"];
        Assert.Contains("tokenizer.ggml.scores has 1 entries, expected 2",
            Assert.Throws<InvalidDataException>(() => DecoderTokenizers.FromData(new("llama", null, tokens, Scores: [0f]), "x.gguf")).Message);
        Assert.Contains("tokenizer.ggml.merges is missing",
            Assert.Throws<InvalidDataException>(() => DecoderTokenizers.FromData(new("gpt2", "gpt-2", tokens), "x.gguf")).Message);
        Assert.Contains("tokenizer.ggml.model 'bert'",
            Assert.Throws<NotSupportedException>(() => DecoderTokenizers.FromData(new("bert", null, tokens), "x.gguf")).Message);
        Assert.Contains("bos token id 7 is outside the vocabulary",
            Assert.Throws<InvalidDataException>(() => DecoderTokenizers.FromData(new("gpt2", "gpt-2", tokens, Merges: ["a b"], Bos: 7), "x.gguf")).Message);
        Assert.Contains("tokenizer.ggml.merges[0]",
            Assert.Throws<InvalidDataException>(() => DecoderTokenizers.FromData(new("gpt2", "gpt-2", tokens, Merges: ["ab"]), "x.gguf")).Message);
    }

    [Fact]
    public void Llama3_style_folder_adds_bos_from_the_template_and_stops_at_every_eos()
    {
        using var folder = new TestModels.TempFolder();
        HfJson.WriteByteLevel(folder.Path, ["a", "b", "ab"], ["a b"],
            added: [("<|begin_of_text|>", 3, true), ("<|end_of_text|>", 4, true), ("<|eot_id|>", 5, true), ("<tool>", 6, false)],
            preTokenizer: $$"""{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": {{System.Text.Json.JsonSerializer.Serialize(ByteLevelPreTokenizer.Llama3Pattern)}}}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}""");
        var json = File.ReadAllText(folder.File("tokenizer.json"));
        json = json[..^1] + """, "post_processor": {"type": "Sequence", "processors": [{"type": "ByteLevel"}, {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]}]}}""";
        File.WriteAllText(folder.File("tokenizer.json"), json);
        File.WriteAllText(folder.File("tokenizer_config.json"), """{"eos_token": "<|eot_id|>"}""");
        File.WriteAllText(folder.File("generation_config.json"), """{"eos_token_id": [4, 5]}""");
        File.WriteAllText(folder.File("chat_template.jinja"), "{% for m in messages %}{{ m.content }}{% endfor %}");

        var t = DecoderTokenizers.FromHuggingFace(folder.Path);
        Assert.True(t.AddBos);
        Assert.Equal(3, t.BosId);
        Assert.Equal(5, t.EosId);
        Assert.Equal([3, 2, 6, 2], t.Encode("ab<tool>ab"));
        Assert.Equal([3, 2, 3, 2, 5], t.Encode("ab<|begin_of_text|>ab<|eot_id|>", parseSpecial: true));
        Assert.Equal(new HashSet<int> { 4, 5 }, t.StopIds);
        Assert.StartsWith("{% for m", t.ChatTemplate);
    }
}
