using SharpTune.Models;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>
/// Ids are those of Hugging Face's BertTokenizer on the uncased all-MiniLM-L6-v2 vocabulary (the
/// bert-base-uncased one), written out by hand from vocab.txt line numbers.
/// </summary>
public class BertTextTokenizerTests
{
    static readonly Lazy<BertTextTokenizer> MiniLmTokenizer = new(() => BuiltInModels.MiniLM.CreateTokenizer());
    static BertTextTokenizer MiniLm => MiniLmTokenizer.Value;

    [Fact]
    public void Special_ids_and_size_match_the_bert_base_uncased_vocabulary()
    {
        Assert.Equal(30522, MiniLm.VocabSize);
        Assert.Equal((0, 100, 101, 102, 103), (MiniLm.PadId, MiniLm.UnkId, MiniLm.ClsId, MiniLm.SepId, MiniLm.MaskId));
        Assert.Equal("##ization", MiniLm.IdToToken(3989));
        Assert.Equal(7592, MiniLm.TokenToId("hello"));
        Assert.Null(MiniLm.TokenToId("Hello"));
    }

    [Fact]
    public void Golden_sentence_matches_transformers()
    {
        var encoded = MiniLm.Encode("Hello, my dog is cute");
        Assert.Equal([101, 7592, 1010, 2026, 3899, 2003, 10140, 102], encoded.InputIds);
        Assert.Equal(new int[8], encoded.TokenTypeIds);
        Assert.False(encoded.Truncated);
    }

    [Fact]
    public void Uncased_tokenizer_strips_accents()
    {
        // Without accent stripping both words are [UNK] (100): the vocabulary has no accented forms.
        Assert.Equal([15743, 7668], MiniLm.Tokenize("naïve café"));
        Assert.Equal([15743, 7668], MiniLm.Tokenize("nai\u0308ve cafe\u0301")); // decomposed input too
    }

    [Fact]
    public void Pair_gets_segment_ids_one_after_the_first_separator()
    {
        var encoded = MiniLm.Encode("How old are you?", "I am six.");
        Assert.Equal([101, 2129, 2214, 2024, 2017, 1029, 102, 1045, 2572, 2416, 1012, 102], encoded.InputIds);
        Assert.Equal([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1], encoded.TokenTypeIds);
        Assert.False(encoded.Truncated);
    }

    [Fact]
    public void Single_text_is_truncated_to_max_length_including_specials()
    {
        var encoded = MiniLm.Encode("one two three four five six", maxLength: 5);
        Assert.Equal([101, 2028, 2048, 2093, 102], encoded.InputIds);
        Assert.True(encoded.Truncated);
        Assert.False(MiniLm.Encode("one two three", maxLength: 5).Truncated); // exactly fits
    }

    [Fact]
    public void Pair_truncation_is_longest_first()
    {
        // 6 + 3 tokens into 8 - 3 specials = 5: cut the longer side to 3 (6>3, 5>3, 4>3), then on a tie the
        // pair loses one: 3 + 2.
        var encoded = MiniLm.Encode("a b c d e f", "x y z", maxLength: 8);
        Assert.Equal([101, 1037, 1038, 1039, 102, 1060, 1061, 102], encoded.InputIds);
        Assert.Equal([0, 0, 0, 0, 0, 1, 1, 1], encoded.TokenTypeIds);
        Assert.True(encoded.Truncated);

        // Only the longer side is cut while the shorter one fits whole.
        var longPair = MiniLm.Encode("a b", "x y z a b c d e f", maxLength: 9);
        Assert.Equal([101, 1037, 1038, 102, 1060, 1061, 1062, 1037, 102], longPair.InputIds);
    }

    [Theory]
    [InlineData(2, null)]
    [InlineData(3, "pair")]
    [InlineData(0, null)]
    public void Max_length_too_small_for_the_specials_is_rejected(int maxLength, string? pair)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => MiniLm.Encode("hello", pair, maxLength));
        Assert.Contains("maxLength must be at least", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => MiniLm.EncodeWords(["hello"], maxLength: 2));
    }

    [Fact]
    public void Words_align_to_their_sub_words()
    {
        var encoded = MiniLm.EncodeWords(["The", "unaffable", "tokenization", "works"]);
        // [CLS] the una ##ffa ##ble token ##ization works [SEP]
        Assert.Equal([101, 1996, 14477, 20961, 3468, 19204, 3989, 2573, 102], encoded.InputIds);
        Assert.Equal([-1, 0, 1, 1, 1, 2, 2, 3, -1], encoded.WordIds);
        Assert.Equal([false, true, true, false, false, true, false, true, false], encoded.IsFirstSubword);
        Assert.Equal(new int[9], encoded.TokenTypeIds);
        Assert.False(encoded.Truncated);
        Assert.Equal(0, encoded.DroppedWordCount);
    }

    [Fact]
    public void Truncated_words_are_counted_and_a_cut_word_keeps_its_first_sub_word()
    {
        var encoded = MiniLm.EncodeWords(["The", "unaffable", "tokenization", "works"], maxLength: 5);
        Assert.Equal([101, 1996, 14477, 20961, 102], encoded.InputIds);
        Assert.Equal([-1, 0, 1, 1, -1], encoded.WordIds);
        Assert.True(encoded.Truncated);
        Assert.Equal(2, encoded.DroppedWordCount);
    }

    [Fact]
    public void A_word_with_no_tokens_becomes_unk_so_alignment_stays_one_to_one()
    {
        var encoded = MiniLm.EncodeWords(["a", "\u0001", " ", "b"]);
        Assert.Equal([101, 1037, 100, 100, 1038, 102], encoded.InputIds);
        Assert.Equal([-1, 0, 1, 2, 3, -1], encoded.WordIds);
        Assert.Equal([false, true, true, true, true, false], encoded.IsFirstSubword);
    }

    [Fact]
    public void Text_cleaning_and_word_splitting_follow_transformers()
    {
        // Microsoft.ML.Tokenizers alone turns "a\tb\nc" into the one word "abc".
        Assert.Equal([1037, 1038, 1039], MiniLm.Tokenize("a\tb\r\nc"));
        // ... and drops symbols: "$" and "`~" vanish, the emoji is lost instead of becoming [UNK].
        Assert.Equal([1002, 1019, 1036, 1066], MiniLm.Tokenize("$5 `~"));
        Assert.Equal([1060, 100], MiniLm.Tokenize("x 😀"));
        // HF drops format characters (soft hyphen) and lone surrogates, which make the library throw.
        Assert.Equal(MiniLm.Tokenize("xy"), MiniLm.Tokenize("x\u00ady"));
        Assert.Equal(MiniLm.Tokenize("ab"), MiniLm.Tokenize("a\ud800b"));
        Assert.Empty(MiniLm.Tokenize(" \u200b\u0000 "));
    }

    [Fact]
    public void Each_cjk_character_is_its_own_word()
    {
        // 爱 (simplified) is not in this vocabulary, only 愛, so it is [UNK] on its own without taking its neighbours.
        Assert.Equal([1855, 100, 1781, 1755], MiniLm.Tokenize("我爱北京"));
    }

    [Fact]
    public void Special_tokens_written_in_the_text_stay_whole()
    {
        Assert.Equal([2054, 103, 2003, 2023], MiniLm.Tokenize("what [MASK] is this"));
    }

    [Fact]
    public void Decode_joins_word_pieces()
    {
        Assert.Equal("unaffable tokenization", MiniLm.Decode([101, 14477, 20961, 3468, 19204, 3989, 102]));
    }

    const string TinyCasedVocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nHello\nhello\nWorld\n##s\nCafé\n,\nCafe\n";

    static string WriteTemp(string fileName, string text)
    {
        var dir = Directory.CreateTempSubdirectory("sharptune-tok-").FullName;
        var path = Path.Combine(dir, fileName);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void Cased_vocabulary_keeps_case_and_accents()
    {
        var path = WriteTemp("vocab.txt", TinyCasedVocab);
        var cased = BertTextTokenizer.FromVocabFile(path, lowerCase: false);
        Assert.Equal(12, cased.VocabSize);
        Assert.Equal((0, 1, 2, 3, 4), (cased.PadId, cased.UnkId, cased.ClsId, cased.SepId, cased.MaskId));
        Assert.Equal([2, 5, 10, 6, 7, 8, 9, 3], cased.Encode("Hello, hello Worlds Café").InputIds);
        Assert.Equal([1], cased.Tokenize("HELLO"));

        var uncased = BertTextTokenizer.FromVocabFile(path, lowerCase: true);
        Assert.Equal([6, 6], uncased.Tokenize("Hello HELLO"));
        Assert.Equal([1], uncased.Tokenize("Café")); // "cafe" after lowercasing and stripping

        // strip_accents applies without lowercasing when asked for explicitly, as in transformers.
        var stripped = BertTextTokenizer.FromVocabFile(path, new TokenizerConfig { DoLowerCase = false, StripAccents = true });
        Assert.Equal([11, 5], stripped.Tokenize("Café Hello"));
    }

    [Fact]
    public void Pretrained_folder_reads_do_lower_case_from_tokenizer_config()
    {
        var vocab = WriteTemp("vocab.txt", TinyCasedVocab);
        var folder = Path.GetDirectoryName(vocab)!;
        Assert.True(BertTextTokenizer.FromPretrained(folder).Config.DoLowerCase); // no config: transformers' default

        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"),
            """{"do_lower_case": false, "unk_token": {"content": "[UNK]", "lstrip": false}, "model_max_length": 512}""");
        var cased = BertTextTokenizer.FromPretrained(folder);
        Assert.False(cased.Config.DoLowerCase);
        Assert.False(cased.Config.ShouldStripAccents);
        Assert.Equal([5, 9], cased.Tokenize("Hello Café"));

        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{"tokenizer_class": "BertTokenizer"}""");
        Assert.True(BertTextTokenizer.FromPretrained(folder).Config.DoLowerCase); // absent field: default true
    }

    [Fact]
    public void Missing_vocabulary_file_names_the_path()
    {
        var path = Path.Combine(Path.GetTempPath(), "sharptune-no-such-dir", "vocab.txt");
        var e = Assert.Throws<FileNotFoundException>(() => BertTextTokenizer.FromVocabFile(path, lowerCase: true));
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.FileName);

        var emptyFolder = Directory.CreateTempSubdirectory("sharptune-tok-").FullName;
        var folderError = Assert.Throws<FileNotFoundException>(() => BertTextTokenizer.FromPretrained(emptyFolder));
        Assert.Contains("vocab.txt", folderError.Message);
    }

    [Fact]
    public void Empty_vocabulary_is_invalid_data()
    {
        var path = WriteTemp("vocab.txt", "");
        var e = Assert.Throws<InvalidDataException>(() => BertTextTokenizer.FromVocabFile(path, lowerCase: true));
        Assert.Contains(path, e.Message);
        Assert.Contains("empty", e.Message);
    }

    [Fact]
    public void Vocabulary_without_a_special_token_or_with_a_repeated_line_is_invalid_data()
    {
        var noMask = WriteTemp("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n");
        var e = Assert.Throws<InvalidDataException>(() => BertTextTokenizer.FromVocabFile(noMask, lowerCase: true));
        Assert.Contains("'[MASK]' (mask_token)", e.Message);

        var repeated = WriteTemp("vocab.txt", TinyCasedVocab + "hello\n");
        e = Assert.Throws<InvalidDataException>(() => BertTextTokenizer.FromVocabFile(repeated, lowerCase: true));
        Assert.Contains("line 13 repeats the token 'hello' of line 7", e.Message);
    }
}
