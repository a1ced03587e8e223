using Microsoft.ML.Tokenizers;

namespace SharpTune.Tokenization;

/// <summary>
/// BERT WordPiece tokenization that gives the same ids as Hugging Face's BertTokenizer. Normalization and
/// WordPiece come from Microsoft.ML.Tokenizers; this class adds HF's text cleaning and word splitting where
/// the library differs (<see cref="BasicTokenization"/>), the special-token layout, and truncation.
/// </summary>
/// <remarks>
/// Known difference left in place: the library recomposes text to NFC after stripping accents, where HF
/// leaves it decomposed. Latin, Greek, Cyrillic and CJK give the same ids, but an uncased model turns a
/// Hangul word into [UNK] here instead of HF's jamo pieces ("한" is ᄒ ##ᅡ ##ᆫ there).
/// </remarks>
public sealed class BertTextTokenizer : IEncoderTokenizer
{
    readonly BertTokenizer _tokenizer;
    readonly WordPieceVocabulary _vocabulary;

    public TokenizerConfig Config { get; }
    public int VocabSize => _vocabulary.Count;
    public int ClsId { get; }
    public int SepId { get; }
    public int PadId { get; }
    public int UnkId { get; }
    public int MaskId { get; }

    BertTextTokenizer(WordPieceVocabulary vocabulary, TokenizerConfig config, string source)
    {
        config.Validate(source);
        _vocabulary = vocabulary;
        Config = config;
        UnkId = vocabulary.RequireSpecial(config.UnkToken, "unk_token", source);
        ClsId = vocabulary.RequireSpecial(config.ClsToken, "cls_token", source);
        SepId = vocabulary.RequireSpecial(config.SepToken, "sep_token", source);
        PadId = vocabulary.RequireSpecial(config.PadToken, "pad_token", source);
        MaskId = vocabulary.RequireSpecial(config.MaskToken, "mask_token", source);
        var specials = new Dictionary<string, int>();
        foreach (var (field, token) in config.SpecialTokens)
            specials.TryAdd(token, vocabulary.RequireSpecial(token, field, source));
        var options = new BertOptions
        {
            LowerCaseBeforeTokenization = config.DoLowerCase,
            RemoveNonSpacingMarks = config.ShouldStripAccents,
            IndividuallyTokenizeCjk = config.TokenizeChineseChars,
            ApplyBasicTokenization = true,
            SplitOnSpecialTokens = true,
            UnknownToken = config.UnkToken,
            ClassificationToken = config.ClsToken,
            SeparatorToken = config.SepToken,
            PaddingToken = config.PadToken,
            MaskingToken = config.MaskToken,
            PreTokenizer = BasicTokenization.CreatePreTokenizer(specials, config.DoLowerCase),
        };
        try
        {
            _tokenizer = BertTokenizer.Create(new MemoryStream(vocabulary.Bytes, writable: false), options);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{source}: Microsoft.ML.Tokenizers rejected the vocabulary ({e.Message})", e);
        }
    }

    /// <summary>A tokenizer for a <c>vocab.txt</c>; accents are stripped when lowercasing, as in transformers.</summary>
    public static BertTextTokenizer FromVocabFile(string vocabPath, bool lowerCase) =>
        FromVocabFile(vocabPath, new TokenizerConfig { DoLowerCase = lowerCase });

    public static BertTextTokenizer FromVocabFile(string vocabPath, TokenizerConfig config)
    {
        if (!File.Exists(vocabPath))
            throw new FileNotFoundException($"WordPiece vocabulary not found: {vocabPath}", vocabPath);
        using var stream = File.OpenRead(vocabPath);
        return FromVocabStream(stream, config, vocabPath);
    }

    /// <summary>A tokenizer for a vocabulary read from <paramref name="vocab"/>; <paramref name="source"/> names it in errors.</summary>
    public static BertTextTokenizer FromVocabStream(Stream vocab, bool lowerCase, string source = "vocabulary stream") =>
        FromVocabStream(vocab, new TokenizerConfig { DoLowerCase = lowerCase }, source);

    public static BertTextTokenizer FromVocabStream(Stream vocab, TokenizerConfig config, string source = "vocabulary stream")
    {
        ArgumentNullException.ThrowIfNull(vocab);
        ArgumentNullException.ThrowIfNull(config);
        return new BertTextTokenizer(WordPieceVocabulary.Read(vocab, source), config, source);
    }

    /// <summary>
    /// A tokenizer for a Hugging Face model folder: <c>vocab.txt</c> plus, when present,
    /// <c>tokenizer_config.json</c> (without it, transformers' defaults: uncased, accents stripped).
    /// </summary>
    public static BertTextTokenizer FromPretrained(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"Model folder not found: {folder}");
        var vocabPath = Path.Combine(folder, "vocab.txt");
        if (!File.Exists(vocabPath))
            throw new FileNotFoundException(
                $"{folder} has no vocab.txt; a BERT WordPiece model folder needs one (tokenizer.json alone is not supported)", vocabPath);
        var configPath = Path.Combine(folder, "tokenizer_config.json");
        var config = File.Exists(configPath) ? TokenizerConfig.Load(configPath) : new TokenizerConfig();
        return FromVocabFile(vocabPath, config);
    }

    /// <summary>The token with this id, e.g. "##ing".</summary>
    public string IdToToken(int id)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, VocabSize);
        return _vocabulary[id];
    }

    /// <summary>The id of a vocabulary entry written exactly as in vocab.txt, or null.</summary>
    public int? TokenToId(string token) => _vocabulary.TryGetId(token, out int id) ? id : null;

    /// <summary>WordPiece ids of <paramref name="text"/>, without special tokens or truncation.</summary>
    public IReadOnlyList<int> Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _tokenizer.EncodeToIds(BasicTokenization.Clean(text),
            addSpecialTokens: false, considerPreTokenization: true, considerNormalization: true);
    }

    /// <summary>Text for ids; WordPiece continuations are joined onto their word.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) => _tokenizer.Decode(ids, skipSpecialTokens);

    /// <summary>
    /// <c>[CLS] text [SEP]</c>, or <c>[CLS] text [SEP] pair [SEP]</c>, at most <paramref name="maxLength"/> tokens
    /// including the special ones. A pair is truncated like transformers' 'longest_first': one token at a
    /// time from the end of whichever side is longer, from the pair when they are equal.
    /// </summary>
    public EncodedText Encode(string text, string? pair = null, int maxLength = 512)
    {
        ArgumentNullException.ThrowIfNull(text);
        int specials = pair is null ? 2 : 3;
        if (maxLength < specials + 1)
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, pair is null
                ? $"maxLength must be at least 3 ([CLS], one token, [SEP]) for a single text, got {maxLength}"
                : $"maxLength must be at least 4 ([CLS], one token, [SEP], [SEP]) for a text pair, got {maxLength}");

        var first = Tokenize(text).ToList();
        var second = pair is null ? null : Tokenize(pair).ToList();
        bool truncated = TruncateLongestFirst(first, second, maxLength - specials);

        int length = first.Count + specials + (second?.Count ?? 0);
        var ids = new int[length];
        var types = new int[length];
        int t = 0;
        ids[t++] = ClsId;
        foreach (int id in first) ids[t++] = id;
        ids[t++] = SepId;
        if (second is not null)
        {
            int secondStart = t;
            foreach (int id in second) ids[t++] = id;
            ids[t++] = SepId;
            types.AsSpan(secondStart).Fill(1);
        }
        return new EncodedText(ids, types, truncated);
    }

    /// <summary>Cuts the two sides to <paramref name="budget"/> tokens in all; true when anything was cut.</summary>
    static bool TruncateLongestFirst(List<int> first, List<int>? second, int budget)
    {
        int secondCount = second?.Count ?? 0;
        if (first.Count + secondCount <= budget) return false;
        if (second is null)
        {
            first.RemoveRange(budget, first.Count - budget);
            return true;
        }
        // Follows transformers' slow tokenizers (truncate_sequences): the fast ones split an odd budget
        // between two long sides the other way round, e.g. 5 + 5 tokens into 7 gives 4 + 3 here, 3 + 4 there.
        int a = first.Count, b = second.Count;
        while (a + b > budget)
        {
            if (a > b) a--;
            else b--;
        }
        first.RemoveRange(a, first.Count - a);
        second.RemoveRange(b, second.Count - b);
        return true;
    }

    /// <summary>
    /// Encodes pre-split words (<c>is_split_into_words</c> in transformers) as <c>[CLS] w0 w1 ... [SEP]</c>
    /// with the word of every token. A word that yields no token (whitespace, a lone control character)
    /// becomes [UNK], so every word keeps a first sub-word to carry its label unless truncation removes it.
    /// </summary>
    public EncodedWords EncodeWords(IReadOnlyList<string> words, int maxLength = 512)
    {
        ArgumentNullException.ThrowIfNull(words);
        if (maxLength < 3)
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength,
                $"maxLength must be at least 3 ([CLS], one token, [SEP]), got {maxLength}");

        int budget = maxLength - 2;
        var ids = new List<int> { ClsId };
        var wordIds = new List<int> { -1 };
        var firsts = new List<bool> { false };
        bool truncated = false;
        int dropped = 0;
        for (int w = 0; w < words.Count; w++)
        {
            var word = words[w] ?? throw new ArgumentException($"words[{w}] is null", nameof(words));
            int room = budget - (ids.Count - 1);
            if (room == 0)
            {
                // Everything from here on is cut; the words are not tokenized, only counted.
                truncated = true;
                dropped = words.Count - w;
                break;
            }
            var pieces = Tokenize(word);
            if (pieces.Count == 0) pieces = [UnkId];
            if (pieces.Count > room) truncated = true;
            for (int p = 0; p < Math.Min(room, pieces.Count); p++)
            {
                ids.Add(pieces[p]);
                wordIds.Add(w);
                firsts.Add(p == 0);
            }
        }
        ids.Add(SepId);
        wordIds.Add(-1);
        firsts.Add(false);
        return new EncodedWords([.. ids], new int[ids.Count], truncated, [.. wordIds], [.. firsts], dropped);
    }
}
