using System.Text.Json;
using SharpTune.Tokenization.Decoders;

namespace SharpTune.Tests.Tokenization.Decoders;

/// <summary>
/// A tokenizer.json folder converted to GGUF tokenizer data must tokenize as the folder does, once rebuilt from that data the
/// way llama.cpp reads it (<see cref="DecoderTokenizers.FromData"/>, itself checked against llama.cpp in
/// <see cref="LlamaCppTokenizerTests"/>); what llama.cpp cannot reproduce is refused by name.
/// </summary>
public class GgufTokenizerConversionTests
{
    static readonly string[] Texts =
    [
        "Hello world", "  leading  and   multiple spaces   ", "numbers 1234567 and 3.14159, -42", "Café naïve résumé",
        "日本語のテキスト", "emoji 🤗🚀 done", "I'm can't we'll HE'S", "line1\nline2\n\n\tTabbed\r\n", "hello world abc",
        "<|im_start|>user\nhi<|im_end|>", "x<|endoftext|>y", "<s>hello</s>", "",
    ];

    static string Split(string pattern) =>
        $$"""{"type": "Split", "pattern": {"Regex": {{JsonSerializer.Serialize(pattern)}}}, "behavior": "Isolated", "invert": false}""";

    static string Sequence(params string[] parts) => $$"""{"type": "Sequence", "pretokenizers": [{{string.Join(", ", parts)}}]}""";

    const string ByteLevelNoRegex = """{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}""";

    public static TheoryData<string, string, bool> PreTokenizers => new()
    {
        { HfJson.ByteLevelPreTokenizerJson, "gpt-2", false },
        { Sequence(Split(ByteLevelPreTokenizer.Llama3Pattern), ByteLevelNoRegex), "llama-bpe", true },
        { Sequence(Split(ByteLevelPreTokenizer.Qwen2Pattern), ByteLevelNoRegex), "qwen2", false },
        { Sequence("""{"type": "Digits", "individual_digits": true}""", HfJson.ByteLevelPreTokenizerJson), "smollm", false },
    };

    static void AssertSameIds(IDecoderTokenizer expected, IDecoderTokenizer actual)
    {
        foreach (var text in Texts)
            foreach (var (addSpecial, parseSpecial) in new[] { (true, false), (false, true) })
                Assert.True(expected.Encode(text, addSpecial, parseSpecial).SequenceEqual(actual.Encode(text, addSpecial, parseSpecial)),
                    $"'{text}' (add special {addSpecial}, parse special {parseSpecial})");
    }

    [Theory]
    [MemberData(nameof(PreTokenizers))]
    public void Byte_level_folders_become_gpt2_data_with_the_pre_tokenizer_llama_cpp_names(string preTokenizer, string pre, bool ignoreMerges)
    {
        using var folder = new TestModels.TempFolder();
        HfJson.WriteByteLevel(folder.Path, Gpt2Reference.Tokens[..Gpt2Reference.EndOfText], Gpt2Reference.Merges,
            [("<|endoftext|>", 50256, true), ("<|im_start|>", 50257, true), ("<|im_end|>", 50258, true), ("<tool>", 50259, false)], preTokenizer,
            """{"add_bos_token": false, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": "{{ messages }}"}""");
        if (ignoreMerges)
        {
            string path = folder.File("tokenizer.json");
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"model\":{", "\"model\":{\"ignore_merges\":true,"));
        }
        var data = GgufTokenizerConversion.FromHuggingFace(folder.Path, vocabSize: 50304);
        Assert.Equal(("gpt2", pre), (data.Model, data.Pre));
        Assert.Equal(50304, data.Tokens.Length);
        Assert.Equal(("[PAD50303]", GgufTokenType.Unused), (data.Tokens[^1], data.TokenTypes![^1]));
        Assert.Equal([GgufTokenType.Control, GgufTokenType.Control, GgufTokenType.Control, GgufTokenType.UserDefined], data.TokenTypes[50256..50260]);
        Assert.Equal((50258, 50256, false), (data.Eos, data.Pad, data.AddBos));
        Assert.Equal("{{ messages }}", data.ChatTemplate);
        AssertSameIds(DecoderTokenizers.FromHuggingFace(folder.Path), DecoderTokenizers.FromData(data, "converted"));
    }

    [Fact]
    public void SentencePiece_folders_become_llama_data_whose_scores_order_the_merges()
    {
        using var folder = new TestModels.TempFolder();
        HfJson.WriteSentencePiece(folder.Path, TinySentencePiece.Tokens, TinySentencePiece.Merges(),
            [("<unk>", TinySentencePiece.Unk, true), ("<s>", TinySentencePiece.Bos, true), ("</s>", TinySentencePiece.Eos, true)],
            """{"add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}""");
        var data = GgufTokenizerConversion.FromHuggingFace(folder.Path, TinySentencePiece.Tokens.Length);
        Assert.Equal(("llama", true, true), (data.Model, data.AddSpacePrefix, data.AddBos));
        Assert.Equal(TinySentencePiece.Types, data.TokenTypes);
        Assert.True(data.Scores![TinySentencePiece.Id("bc")] > data.Scores[TinySentencePiece.Id("ab")], "bc merges before ab");
        AssertSameIds(DecoderTokenizers.FromHuggingFace(folder.Path), DecoderTokenizers.FromData(data, "converted"));
        AssertSameIds(DecoderTokenizers.FromData(TinySentencePiece.Data(), "scores"), DecoderTokenizers.FromData(data, "converted"));
    }

    [Fact]
    public void What_llama_cpp_cannot_reproduce_is_refused_by_name()
    {
        using var folder = new TestModels.TempFolder();
        HfJson.WriteByteLevel(folder.Path, ["a", "b", "ab"], ["a b"], [], Sequence(Split(@"\p{L}+"), ByteLevelNoRegex));
        var error = Assert.Throws<NotSupportedException>(() => GgufTokenizerConversion.FromHuggingFace(folder.Path, 3));
        Assert.Contains("tokenizer.ggml.pre", error.Message);
        Assert.Contains(@"\p{L}+", error.Message);

        HfJson.WriteByteLevel(folder.Path, ["a", "b", "ab"], ["a b"], [], """{"type": "ByteLevel", "add_prefix_space": true, "use_regex": true}""");
        Assert.Contains("prefix space", Assert.Throws<NotSupportedException>(() => GgufTokenizerConversion.FromHuggingFace(folder.Path, 3)).Message);

        HfJson.WriteByteLevel(folder.Path, ["a", "b", "ab"], ["a b"], [], HfJson.ByteLevelPreTokenizerJson);
        Assert.Contains("more than the model's 2", Assert.Throws<ArgumentException>(() => GgufTokenizerConversion.FromHuggingFace(folder.Path, 2)).Message);
    }

    [Theory]
    [InlineData("gpt-2")]
    [InlineData("llama-bpe")]
    [InlineData("qwen2")]
    [InlineData("smollm")]
    public void Byte_level_gguf_data_becomes_a_tokenizer_json_that_tokenizes_alike(string pre)
    {
        using var folder = new TestModels.TempFolder();
        var data = Gpt2Reference.GgufData(pre) with { ChatTemplate = "{{ messages }}", Eos = 50256 };
        var files = GgufTokenizerConversion.ToHuggingFace(data, folder.Path, "test.gguf");
        Assert.Equal([folder.File("tokenizer.json"), folder.File("tokenizer_config.json")], files);
        var converted = DecoderTokenizers.FromHuggingFace(folder.Path);
        var expected = DecoderTokenizers.FromData(data, "test.gguf");
        Assert.Equal((expected.AddBos, expected.EosId, "{{ messages }}"), (converted.AddBos, converted.EosId, converted.ChatTemplate));
        AssertSameIds(expected, converted);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void SentencePiece_gguf_data_becomes_a_tokenizer_json_whose_merges_follow_the_scores(bool addSpacePrefix)
    {
        using var folder = new TestModels.TempFolder();
        var data = TinySentencePiece.Data() with { AddSpacePrefix = addSpacePrefix };
        GgufTokenizerConversion.ToHuggingFace(data, folder.Path, "test.gguf");
        var converted = DecoderTokenizers.FromHuggingFace(folder.Path);
        var expected = DecoderTokenizers.FromData(data, "test.gguf");
        Assert.Equal([TinySentencePiece.Bos, TinySentencePiece.Id(addSpacePrefix ? "▁a" : "a"), TinySentencePiece.Id("bc")], converted.Encode("abc"));
        AssertSameIds(expected, converted);
        foreach (var text in Texts) Assert.Equal(expected.Decode(expected.Encode(text)), converted.Decode(converted.Encode(text)));
    }
}
