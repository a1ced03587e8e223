namespace SharpTune.Tokenization.Decoders;

/// <summary>Builds decoder tokenizers from a Hugging Face folder or from GGUF tokenizer metadata.</summary>
public static class DecoderTokenizers
{
    /// <summary>From <c>tokenizer.json</c> (+ optional <c>tokenizer_config.json</c>, <c>generation_config.json</c>) in <paramref name="folder"/>.</summary>
    public static IDecoderTokenizer FromHuggingFace(string folder) => HuggingFaceTokenizerLoader.Load(folder);

    /// <summary>
    /// From GGUF tokenizer data, following llama.cpp's <c>llama_vocab::load</c>: "gpt2" is byte-level BPE with the
    /// pre-tokenizer named by <c>tokenizer.ggml.pre</c>; "llama" is SentencePiece BPE merged by score.
    /// Control (3) and unknown (2) tokens are special; user-defined (4) tokens are always matched in text.
    /// <paramref name="source"/> names the file in error messages.
    /// </summary>
    public static IDecoderTokenizer FromData(DecoderTokenizerData data, string source)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.Tokens is not { Length: > 0 })
            throw new InvalidDataException($"{source}: tokenizer.ggml.tokens is missing or empty.");
        int n = data.Tokens.Length;
        if (data.TokenTypes is { } types && types.Length != n)
            throw new InvalidDataException($"{source}: tokenizer.ggml.token_type has {types.Length} entries, expected {n} (one per token).");
        if (data.Scores is { } s && s.Length != n)
            throw new InvalidDataException($"{source}: tokenizer.ggml.scores has {s.Length} entries, expected {n} (one per token).");

        var added = new List<AddedToken>();
        if (data.TokenTypes is { } tt)
            for (int i = 0; i < n; i++)
                if (tt[i] is GgufTokenType.Control or GgufTokenType.Unknown or GgufTokenType.UserDefined)
                    added.Add(new AddedToken(data.Tokens[i], i, Special: tt[i] != GgufTokenType.UserDefined));
        foreach (var id in new[] { data.Bos, data.Eos, data.Unk, data.Pad })
            if (id is int i && i >= 0 && i < n && added.All(a => a.Id != i)) added.Add(new AddedToken(data.Tokens[i], i, true));

        switch (data.Model)
        {
            case "gpt2":
            {
                if (data.Merges is null)
                    throw new InvalidDataException($"{source}: tokenizer.ggml.merges is missing (required when tokenizer.ggml.model is 'gpt2').");
                var (pre, ignoreMerges, defaultAddBos) = ByteLevelPreTokenizer.ForGguf(data.Pre, source);
                var setup = Setup(data, added, source, data.AddBos ?? defaultAddBos, data.AddEos ?? false, bos: data.Bos, eos: data.Eos, unk: data.Unk);
                return new ByteLevelBpeTokenizer(setup, ParseMerges(data.Merges, source, "tokenizer.ggml.merges"), pre,
                    ignoreMerges, addPrefixSpace: false, normalizeNfc: false);
            }
            case "llama":
            {
                if (data.Scores is null)
                    throw new InvalidDataException($"{source}: tokenizer.ggml.scores is missing (required when tokenizer.ggml.model is 'llama').");
                // llama.cpp's defaults for SentencePiece vocabularies: <unk> 0, <s> 1, </s> 2, BOS added.
                var setup = Setup(data, added, source, data.AddBos ?? true, data.AddEos ?? false,
                    bos: data.Bos ?? DefaultIfPresent(1, n), eos: data.Eos ?? DefaultIfPresent(2, n), unk: data.Unk ?? DefaultIfPresent(0, n));
                var byteTokens = data.TokenTypes?.Select(t => t == GgufTokenType.Byte).ToArray();
                return new SentencePieceBpeTokenizer(setup, data.Scores, merges: null, byteTokens, byteFallback: true,
                    data.AddSpacePrefix ?? true ? SpacePrefix.Always : SpacePrefix.Never, splitOnMarker: false);
            }
            default:
                throw new NotSupportedException(
                    $"{source}: tokenizer.ggml.model '{data.Model}' is not supported; supported: gpt2 (byte-level BPE), llama (SentencePiece BPE).");
        }
    }

    static int? DefaultIfPresent(int id, int vocabSize) => id < vocabSize ? id : null;

    static DecoderTokenizerSetup Setup(DecoderTokenizerData data, List<AddedToken> added, string source,
        bool addBos, bool addEos, int? bos, int? eos, int? unk) =>
        new(data.Tokens, added, bos, eos, data.Pad, unk, addBos, addEos, [], data.ChatTemplate, source);

    /// <summary>Merges written "left right" (split at the first space after the first character, as llama.cpp does).</summary>
    internal static List<(string, string)> ParseMerges(IEnumerable<string> merges, string source, string key)
    {
        var result = new List<(string, string)>();
        int line = 0;
        foreach (var merge in merges)
        {
            int space = merge.Length > 1 ? merge.IndexOf(' ', 1) : -1;
            if (space < 0 || space == merge.Length - 1)
                throw new InvalidDataException($"{source}: {key}[{line}] is '{merge}', expected two tokens separated by a space.");
            result.Add((merge[..space], merge[(space + 1)..]));
            line++;
        }
        return result;
    }
}
