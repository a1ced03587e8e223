using System.Text;
using LLama;
using LLama.Common;
using SharpTune.Models.Decoders;
using SharpTune.Tests.Checkpoints.Gguf;
using SharpTune.Tests.Models.Decoders;
using SharpTune.Tokenization.Decoders;

namespace SharpTune.Tests.Tokenization.Decoders;

/// <summary>
/// llama.cpp (LLamaSharp 0.30) as an independent reference: the same tokenizer data written to a vocabulary-only
/// GGUF, loaded with <c>VocabOnly</c>, must give the same ids as <see cref="DecoderTokenizers.FromData"/>.
/// </summary>
public class LlamaCppTokenizerTests
{
    static readonly string[] Texts =
    [
        "Hello world", "  leading  and   multiple spaces   ", "numbers 1234567 and 3.14159, -42",
        "Café naïve résumé", "日本語のテキスト", "emoji 🤗🚀 done", "I'm can't we'll HE'S", "line1\nline2\n\n\tTabbed\r\n",
        "hello world", "abc", " hello", "é and 🤗", "x<|endoftext|>y", "<s>hello</s>", "",
        "1,000,000 and 2024-01-31", "'s'S 'LL 'Re", "a\u00A0b \u3000c", "   \n  \n\n x", "\r\n\r\n\ty", "🤗🤗 x🤗", "ÀÉÎõü ĳ ǅ",
        "Ω≈ç√∫ ÷ ¿¡", "tab\tand\u000Bvt", "mixed123abc456", "!!!??? ...", "  \n",
        "𝐀𝐁𝐂 bold, 𠀀𠀁 ext-B, x𝟏𝟐𝟑4 math digits, 𐍈 gothic", "a𝐀b x𠀀y 1𝟏2 .𝐀",
    ];

    static int[] LlamaCppIds(LLamaWeights weights, string text, bool addBos, bool special) =>
        weights.Tokenize(text, addBos, special, Encoding.UTF8).Select(t => (int)t).ToArray();

    static LLamaWeights Load(string path)
    {
        LLama.Native.NativeApi.llama_empty_call();
        return LLamaWeights.LoadFromFile(new ModelParams(path) { VocabOnly = true, GpuLayerCount = 0 });
    }

    /// <summary>Checks every text both ways; <paramref name="anchor"/>: llama.cpp's ids for one text, known independently.</summary>
    static void AssertSameIds(DecoderTokenizerData data, IEnumerable<(string, object)> tokenizerMetadata, (string Text, int[] Ids) anchor)
    {
        using var folder = new TestModels.TempFolder();
        var path = folder.File("vocab.gguf");
        VocabOnlyGgufWriter.Write(path, VocabOnlyGgufWriter.LlamaMetadata(tokenizerMetadata));
        using var weights = Load(path);
        var ours = DecoderTokenizers.FromData(data, path);
        Assert.Equal(weights.Vocab.Count, ours.VocabSize);
        Assert.Equal(anchor.Ids, LlamaCppIds(weights, anchor.Text, addBos: true, special: false));
        foreach (var text in Texts)
            foreach (var (addBos, special) in new[] { (true, false), (false, true) })
            {
                var expected = LlamaCppIds(weights, text, addBos, special);
                var actual = ours.Encode(text, addSpecialTokens: addBos, parseSpecial: special).ToArray();
                Assert.True(expected.SequenceEqual(actual),
                    $"'{text}' (addBos {addBos}, special {special}): llama.cpp [{string.Join(", ", expected)}], ours [{string.Join(", ", actual)}]");
            }
    }

    [Fact]
    public void Gpt2_byte_level_ids_equal_llama_cpp()
    {
        var data = Gpt2Reference.GgufData() with { AddBos = false };
        AssertSameIds(data,
        [
            ("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", "gpt-2"),
            ("tokenizer.ggml.tokens", data.Tokens), ("tokenizer.ggml.token_type", data.TokenTypes!),
            ("tokenizer.ggml.merges", data.Merges!),
            ("tokenizer.ggml.bos_token_id", (uint)data.Bos!.Value), ("tokenizer.ggml.eos_token_id", (uint)data.Eos!.Value),
            ("tokenizer.ggml.add_bos_token", false),
        ], ("Hello world", [15496, 995]));
    }

    /// <summary>The other pre-tokenizers over GPT-2's vocabulary: llama-bpe also checks ignore_merges and its default BOS.</summary>
    [Theory]
    [InlineData("llama-bpe")]
    [InlineData("qwen2")]
    [InlineData("smollm")]
    [InlineData("default")]
    public void Byte_level_pre_tokenizers_equal_llama_cpp(string pre)
    {
        var data = Gpt2Reference.GgufData(pre);
        var ours = DecoderTokenizers.FromData(data, pre);
        AssertSameIds(data,
        [
            ("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", pre),
            ("tokenizer.ggml.tokens", data.Tokens), ("tokenizer.ggml.token_type", data.TokenTypes!),
            ("tokenizer.ggml.merges", data.Merges!),
            ("tokenizer.ggml.bos_token_id", (uint)data.Bos!.Value), ("tokenizer.ggml.eos_token_id", (uint)data.Eos!.Value),
        ], ("Hello world", [.. ours.AddBos ? [Gpt2Reference.EndOfText] : Array.Empty<int>(), 15496, 995]));
        Assert.Equal(pre == "llama-bpe", ours.AddBos);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void SentencePiece_ids_equal_llama_cpp(bool addSpacePrefix)
    {
        var data = TinySentencePiece.Data() with { AddSpacePrefix = addSpacePrefix };
        AssertSameIds(data,
        [
            ("tokenizer.ggml.model", "llama"), ("tokenizer.ggml.pre", "default"),
            ("tokenizer.ggml.tokens", data.Tokens), ("tokenizer.ggml.token_type", data.TokenTypes!),
            ("tokenizer.ggml.scores", data.Scores!),
            ("tokenizer.ggml.bos_token_id", (uint)TinySentencePiece.Bos), ("tokenizer.ggml.eos_token_id", (uint)TinySentencePiece.Eos),
            ("tokenizer.ggml.unknown_token_id", (uint)TinySentencePiece.Unk), ("tokenizer.ggml.add_bos_token", true),
            ("tokenizer.ggml.add_space_prefix", addSpacePrefix),
        ], addSpacePrefix
            ? ("abc", [TinySentencePiece.Bos, TinySentencePiece.Id("▁a"), TinySentencePiece.Id("bc")])
            : ("abc", [TinySentencePiece.Bos, TinySentencePiece.Id("a"), TinySentencePiece.Id("bc")]));
    }

    /// <summary>
    /// The path a model file takes (GGUF metadata read, then the tokenizer built): <c>tokenizer.ggml.add_space_prefix</c>
    /// reaches the tokenizer a loaded model uses, so a completion encoded alone gets no ▁ that llama.cpp would not add.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_loaded_gguf_model_tokenizes_with_its_space_prefix_setting(bool addSpacePrefix)
    {
        using var folder = new TestModels.TempFolder();
        string path = folder.File("tiny.gguf");
        var sizes = new TinyDecoderSizes(300, 32, 1, 4, 2, 37, 48);
        GgufTestModels.WriteLlama(path, "llama", sizes, GgufTestModels.HfLlama(sizes, bias: false, tied: false),
            edit: w => w.Set("tokenizer.ggml.add_space_prefix", addSpacePrefix));
        using var model = LanguageModel.Load(path);
        using var weights = Load(path);
        foreach (var text in new[] { "yes", " yes", "q12: no", "Café" })
        {
            var expected = LlamaCppIds(weights, text, addBos: false, special: false);
            var actual = model.Tokenizer.Encode(text, addSpecialTokens: false).ToArray();
            Assert.True(expected.SequenceEqual(actual), $"'{text}': llama.cpp [{string.Join(", ", expected)}], ours [{string.Join(", ", actual)}]");
        }
        Assert.Equal(addSpacePrefix, model.Tokenizer.Encode("yes", addSpecialTokens: false).Count == 6);   // ▁ is three byte tokens
    }
}
