using SharpTune.Tokenization.Decoders;

namespace SharpTune.Tests.Tokenization.Decoders;

public class ByteLevelBpeTests
{
    static readonly string[] TextList =
    [
        "Hello world",
        "  leading  and   multiple spaces   ",
        "numbers 1234567 and 3.14159, -42",
        "Café naïve résumé Ångström",
        "日本語のテキストと中文",
        "emoji 🤗🚀 done 👩‍👩‍👧",
        "I'm can't we'll they've you'd HE'S shouldn't",
        "line1\nline2\n\n\tTabbed\r\n  indented\n",
        "def f(x):\n    return x**2  # comment\n",
        "",
        " ",
        "a",
    ];

    public static TheoryData<string> Texts => new(TextList);

    static readonly Lazy<IDecoderTokenizer> gpt2 = new(() => DecoderTokenizers.FromData(Gpt2Reference.GgufData(), "gpt2-test"));

    [Theory, MemberData(nameof(Texts))]
    public void Gpt2_ids_equal_Microsoft_ML_tiktoken(string text)
    {
        var expected = Gpt2Reference.Tiktoken.EncodeToIds(text);
        Assert.Equal(expected, gpt2.Value.Encode(text, addSpecialTokens: false));
    }

    [Theory, MemberData(nameof(Texts))]
    public void Decode_inverts_encode(string text)
    {
        var ids = gpt2.Value.Encode(text);
        Assert.Equal(text, gpt2.Value.Decode(ids));
    }

    [Theory]
    [InlineData("🤗")]
    [InlineData("日本語 and é")]
    [InlineData("emoji 🤗🚀 done 👩‍👩‍👧")]
    public void Decoding_one_id_at_a_time_never_splits_a_character(string text)
    {
        var ids = gpt2.Value.Encode(text);
        var stream = gpt2.Value.CreateDecodeStream();
        var pieces = ids.Select(stream.Next).ToList();
        pieces.Add(stream.Flush());
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Equal(text, string.Concat(pieces));
        if (text == "🤗") Assert.True(ids.Count > 1 && pieces[0] == "", "the emoji spans several byte tokens");
    }

    [Fact]
    public void Gpt2_has_no_bos_and_stops_at_endoftext()
    {
        var t = gpt2.Value;
        Assert.False(t.AddBos);
        Assert.Equal(50257, t.VocabSize);
        Assert.Equal(Gpt2Reference.EndOfText, t.EosId);
        Assert.Contains(Gpt2Reference.EndOfText, t.StopIds);
        Assert.Equal(t.Encode("hi", addSpecialTokens: false), t.Encode("hi"));
    }

    [Fact]
    public void Special_tokens_in_text_map_to_their_id_only_when_asked()
    {
        var t = gpt2.Value;
        const string text = "one<|endoftext|>two";
        var parsed = t.Encode(text, parseSpecial: true);
        Assert.Equal([.. t.Encode("one"), Gpt2Reference.EndOfText, .. t.Encode("two")], parsed);
        var plain = t.Encode(text);
        Assert.DoesNotContain(Gpt2Reference.EndOfText, plain);
        Assert.Equal(text, t.Decode(plain));
        Assert.Equal(text, t.Decode(parsed));
        Assert.Equal("onetwo", t.Decode(parsed, skipSpecialTokens: true));
    }

    [Fact]
    public void Tokenizer_json_folder_gives_the_same_ids_as_gguf_data()
    {
        using var folder = new TestModels.TempFolder();
        HfJson.WriteByteLevel(folder.Path, Gpt2Reference.Tokens[..Gpt2Reference.EndOfText], Gpt2Reference.Merges,
            added: [("<|endoftext|>", Gpt2Reference.EndOfText, true)], preTokenizer: HfJson.ByteLevelPreTokenizerJson,
            config: """{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}""");
        var fromJson = DecoderTokenizers.FromHuggingFace(folder.Path);
        foreach (var text in TextList) Assert.Equal(gpt2.Value.Encode(text), fromJson.Encode(text));
        Assert.Equal(Gpt2Reference.EndOfText, fromJson.EosId);
        Assert.False(fromJson.AddBos);
    }

    [Theory]
    [InlineData("gpt-2", "abc 12345 I'M", new[] { "abc", " 12345", " I", "'", "M" })]
    [InlineData("llama-bpe", "abc 12345 I'M", new[] { "abc", " ", "123", "45", " I", "'M" })]
    [InlineData("qwen2", "abc 12345", new[] { "abc", " ", "1", "2", "3", "4", "5" })]
    [InlineData("smollm", "abc 123x", new[] { "abc", " ", "1", "2", "3", "x" })]
    [InlineData("llama-bpe", "a\n\n  b", new[] { "a", "\n\n", " ", " b" })]
    [InlineData("gpt-2", "a𝐀b x🤗 𠀀", new[] { "a𝐀b", " x", "🤗", " 𠀀" })]
    [InlineData("qwen2", "x𝟏𝟐 .𝐀", new[] { "x", "𝟏", "𝟐", " .", "𝐀" })]
    public void Pre_tokenizers_split_as_each_model_does(string pre, string text, string[] expected)
    {
        var (preTokenizer, _, _) = ByteLevelPreTokenizer.ForGguf(pre, "test");
        Assert.Equal(expected, preTokenizer.Split(text));
    }

    [Fact]
    public void Unknown_pre_tokenizer_is_named_with_the_supported_ones()
    {
        var e = Assert.Throws<NotSupportedException>(() => DecoderTokenizers.FromData(Gpt2Reference.GgufData("tekken"), "m.gguf"));
        Assert.Contains("m.gguf", e.Message);
        Assert.Contains("'tekken'", e.Message);
        Assert.Contains("gpt-2", e.Message);
        Assert.Contains("qwen2", e.Message);
    }

    [Fact]
    public void Llama3_ignore_merges_takes_a_whole_word_that_is_a_token()
    {
        // "abc" is a token but no merge builds it: ignore_merges (llama-bpe) takes it whole; gpt-2 merges to "ab" "c".
        string[] tokens = ["a", "b", "c", "ab", "abc", "<|begin_of_text|>", "<|eot_id|>"];
        int[] types = [1, 1, 1, 1, 1, 3, 3];
        var llama3 = DecoderTokenizers.FromData(new("gpt2", "llama-bpe", tokens, types, ["a b"], Bos: 5, Eos: 6), "t");
        var gpt2Style = DecoderTokenizers.FromData(new("gpt2", "gpt-2", tokens, types, ["a b"], Bos: 5, Eos: 6), "t");
        Assert.Equal([5, 4], llama3.Encode("abc"));
        Assert.True(llama3.AddBos);
        Assert.Equal([3, 2], gpt2Style.Encode("abc"));
        Assert.Contains(6, llama3.StopIds);
    }

    [Fact]
    public void Llama3_and_Qwen2_style_tokenizer_json_equal_their_gguf_pre_tokenizers()
    {
        foreach (var (pre, pattern, extra) in new[]
        {
            ("llama-bpe", ByteLevelPreTokenizer.Llama3Pattern, "\"ignore_merges\": true, "),
            ("qwen2", ByteLevelPreTokenizer.Qwen2Pattern, ""),
        })
        {
            using var folder = new TestModels.TempFolder();
            var split = $$"""{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": {{System.Text.Json.JsonSerializer.Serialize(pattern)}}}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}""";
            HfJson.WriteByteLevel(folder.Path, Gpt2Reference.Tokens[..Gpt2Reference.EndOfText], Gpt2Reference.Merges,
                added: [("<|endoftext|>", Gpt2Reference.EndOfText, true)], preTokenizer: split);
            var path = folder.File("tokenizer.json");
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"model\":{", "\"model\":{" + extra));
            var fromJson = (ByteLevelBpeTokenizer)DecoderTokenizers.FromHuggingFace(folder.Path);
            var fromGguf = DecoderTokenizers.FromData(Gpt2Reference.GgufData(pre) with { AddBos = false }, pre);
            Assert.Equal(pre == "llama-bpe", fromJson.IgnoreMerges);
            foreach (var text in TextList) Assert.Equal(fromGguf.Encode(text), fromJson.Encode(text));
        }
    }

    [Fact]
    public void Nfc_normalizer_composes_accents_before_encoding()
    {
        using var folder = new TestModels.TempFolder();
        HfJson.WriteByteLevel(folder.Path, Gpt2Reference.Tokens[..Gpt2Reference.EndOfText], Gpt2Reference.Merges,
            added: [], preTokenizer: HfJson.ByteLevelPreTokenizerJson);
        var path = folder.File("tokenizer.json");
        File.WriteAllText(path, File.ReadAllText(path).Replace("\"normalizer\":null", "\"normalizer\":{\"type\":\"NFC\"}"));
        var nfc = DecoderTokenizers.FromHuggingFace(folder.Path);
        Assert.Equal(gpt2.Value.Encode("caf\u00E9"), nfc.Encode("cafe\u0301"));
        Assert.NotEqual(gpt2.Value.Encode("caf\u00E9"), gpt2.Value.Encode("cafe\u0301"));
    }

    [Fact]
    public void Stream_skips_special_tokens_when_asked()
    {
        var t = gpt2.Value;
        var ids = t.Encode("Hi 🤗<|endoftext|>bye", parseSpecial: true);
        var stream = t.CreateDecodeStream(skipSpecialTokens: true);
        Assert.Equal("Hi 🤗bye", string.Concat(ids.Select(stream.Next)) + stream.Flush());
        Assert.Throws<ArgumentOutOfRangeException>(() => t.Decode([50257]));
    }
}
