using SharpTune.Tokenization.Decoders;
using static SharpTune.Tests.Tokenization.Decoders.TinySentencePiece;

namespace SharpTune.Tests.Tokenization.Decoders;

public class SentencePieceBpeTests
{
    static readonly IDecoderTokenizer gguf = DecoderTokenizers.FromData(TinySentencePiece.Data(), "tiny-spm");

    [Fact]
    public void Merges_follow_scores_not_position()
    {
        Assert.Equal([Id("▁a"), Id("bc")], gguf.Encode("abc", addSpecialTokens: false));
    }

    [Fact]
    public void Adds_bos_and_a_leading_space_and_decodes_back()
    {
        var ids = gguf.Encode("hello world");
        Assert.Equal([Bos, Id("▁hello"), Id("▁world")], ids);
        Assert.Equal("hello world", gguf.Decode(ids, skipSpecialTokens: true));
        Assert.Equal("<s> hello world", gguf.Decode(ids));
        Assert.Equal([Bos], gguf.Encode(""));
    }

    [Fact]
    public void Leading_space_of_the_text_is_kept()
    {
        var ids = gguf.Encode(" hello", addSpecialTokens: false);
        Assert.Equal([Id("▁"), Id("▁hello")], ids);
        Assert.Equal(" hello", gguf.Decode(ids));
    }

    [Fact]
    public void Characters_outside_the_vocabulary_become_byte_tokens()
    {
        var ids = gguf.Encode("é", addSpecialTokens: false);
        Assert.Equal([Id("▁"), FirstByte + 0xC3, FirstByte + 0xA9], ids);
        Assert.Equal("é", gguf.Decode(ids));

        var stream = gguf.CreateDecodeStream();
        Assert.Equal("", stream.Next(ids[0]));
        Assert.Equal("", stream.Next(ids[1]));
        Assert.Equal("é", stream.Next(ids[2]));
        Assert.Equal("", stream.Flush());
    }

    [Fact]
    public void Stream_of_many_tokens_equals_decode()
    {
        var ids = gguf.Encode("hello wörld 🤗 abc", addSpecialTokens: false);
        var stream = gguf.CreateDecodeStream();
        var streamed = string.Concat(ids.Select(stream.Next)) + stream.Flush();
        Assert.Equal("hello wörld 🤗 abc", streamed);
        Assert.Equal(gguf.Decode(ids), streamed);
    }

    [Fact]
    public void Special_tokens_parse_only_when_asked_and_text_after_them_gets_a_space()
    {
        Assert.Equal([Bos, Id("▁hello"), Eos], gguf.Encode("<s>hello</s>", addSpecialTokens: false, parseSpecial: true));
        var plain = gguf.Encode("<s>", addSpecialTokens: false);
        Assert.Equal([Id("▁"), FirstByte + '<', FirstByte + 's', FirstByte + '>'], plain);
        Assert.True(gguf.IsSpecial(Bos));
        Assert.False(gguf.IsSpecial(Id("▁hello")));
    }

    [Fact]
    public void Eos_is_appended_when_the_file_says_so()
    {
        var withEos = DecoderTokenizers.FromData(TinySentencePiece.Data(addEos: true), "tiny-spm");
        Assert.Equal([Bos, Id("▁hello"), Eos], withEos.Encode("hello"));
        Assert.Equal([Id("▁hello")], withEos.Encode("hello", addSpecialTokens: false));
        Assert.Equal(new HashSet<int> { Eos }, withEos.StopIds);
    }

    [Fact]
    public void Tokenizer_json_with_merges_gives_the_same_ids_as_scores()
    {
        using var folder = new TestModels.TempFolder();
        HfJson.WriteSentencePiece(folder.Path, Tokens, Merges(),
            added: [("<unk>", Unk, true), ("<s>", Bos, true), ("</s>", Eos, true)],
            config: """{"add_bos_token": true, "add_eos_token": false, "bos_token": {"content": "<s>"}, "eos_token": "</s>", "unk_token": "<unk>", "chat_template": "{{ bos_token }}"}""");
        var hf = DecoderTokenizers.FromHuggingFace(folder.Path);
        foreach (var text in new[] { "abc", "hello world", " hello", "é and 🤗", "hello  world  ", "" })
        {
            Assert.Equal(gguf.Encode(text), hf.Encode(text));
            Assert.Equal(gguf.Decode(gguf.Encode(text)), hf.Decode(hf.Encode(text)));
        }
        Assert.Equal("{{ bos_token }}", hf.ChatTemplate);
        Assert.True(hf.AddBos);
        Assert.Equal(Unk, hf.UnkId);
    }

    [Fact]
    public void Metaspace_first_prepends_only_at_the_start_of_the_input()
    {
        using var folder = new TestModels.TempFolder();
        HfJson.WriteSentencePiece(folder.Path, Tokens, Merges(), added: [("<unk>", Unk, true), ("<s>", Bos, true), ("</s>", Eos, true)]);
        var path = folder.File("tokenizer.json");
        var json = File.ReadAllText(path);
        json = json.Replace(json[json.IndexOf("\"normalizer\":", StringComparison.Ordinal)..json.IndexOf(",\"pre_tokenizer\":null", StringComparison.Ordinal)], "\"normalizer\":null")
            .Replace("\"pre_tokenizer\":null", "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"first\",\"split\":false}");
        File.WriteAllText(path, json);
        var t = DecoderTokenizers.FromHuggingFace(folder.Path);
        Assert.False(t.AddBos);
        Assert.Equal([Id("▁hello"), Bos, Id("hello")], t.Encode("hello<s>hello", parseSpecial: true));
        Assert.Equal("hello world", t.Decode(t.Encode("hello world")));
    }
}
