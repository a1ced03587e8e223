using System.Text.Json;

namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// A Hugging Face tokenizer folder as GGUF tokenizer data (<c>tokenizer.ggml.*</c>), as llama.cpp's
/// <c>convert_hf_to_gguf.py</c> writes it: byte-level BPE becomes model "gpt2" with its merges and the pre-tokenizer
/// named by the preset its regexes equal; SentencePiece BPE becomes model "llama" with scores that order the merges as
/// the merges list does. Added tokens become control (special) or user-defined tokens; ids missing from the
/// vocabulary and rows the model has beyond it become unused <c>[PAD{id}]</c> tokens, since llama.cpp wants one token
/// per embedding row. What llama.cpp's tokenizers cannot reproduce is refused by name.
/// </summary>
public static class GgufTokenizerConversion
{
    public static DecoderTokenizerData FromHuggingFace(string folder, int vocabSize)
    {
        var tokenizer = HuggingFaceTokenizerLoader.Load(folder);
        string path = Path.Combine(folder, "tokenizer.json");
        using var doc = HuggingFaceTokenizerLoader.ParseJson(path);
        var model = HuggingFaceTokenizerLoader.Field(doc.RootElement, "model", JsonValueKind.Object, path);
        var merges = HuggingFaceTokenizerLoader.ReadMerges(HuggingFaceTokenizerLoader.Field(model, "merges", JsonValueKind.Array, path, "model.merges"), path);
        var added = HuggingFaceTokenizerLoader.ReadAddedTokens(doc.RootElement, path).ToDictionary(a => a.Id);
        if (tokenizer.VocabSize > vocabSize)
            throw new ArgumentException($"{path}: the tokenizer has {tokenizer.VocabSize} tokens, more than the model's {vocabSize} embedding rows");

        var tokens = new string[vocabSize];
        var types = new int[vocabSize];
        for (int id = 0; id < vocabSize; id++)
        {
            string token = id < tokenizer.VocabSize ? tokenizer.IdToToken(id) : "";
            (tokens[id], types[id]) = token.Length == 0 ? ($"[PAD{id}]", GgufTokenType.Unused)
                : added.TryGetValue(id, out var a) ? (token, a.Special ? GgufTokenType.Control : GgufTokenType.UserDefined)
                : (token, GgufTokenType.Normal);
        }
        var data = new DecoderTokenizerData("", null, tokens, types, Bos: tokenizer.BosId, Eos: tokenizer.EosId, Unk: tokenizer.UnkId,
            Pad: tokenizer.PadId, AddBos: tokenizer.AddBos, AddEos: tokenizer.AddEos, ChatTemplate: tokenizer.ChatTemplate);

        switch (tokenizer)
        {
            case ByteLevelBpeTokenizer byteLevel:
            {
                if (byteLevel.AddPrefixSpace)
                    throw new NotSupportedException($"{path}: the ByteLevel pre-tokenizer adds a prefix space, which llama.cpp's byte-level BPE does not do");
                string? pre = ByteLevelPreTokenizer.GgufName(byteLevel.PreTokenizer.Patterns, byteLevel.IgnoreMerges);
                if (pre is null)
                    throw new NotSupportedException(
                        $"{path}: the pre-tokenizer (regexes {string.Join(" then ", byteLevel.PreTokenizer.Patterns.Select(p => $"'{p}'"))}, ignore_merges " +
                        $"{byteLevel.IgnoreMerges.ToString().ToLowerInvariant()}) is none that llama.cpp names (tokenizer.ggml.pre: " +
                        $"{string.Join(", ", ByteLevelPreTokenizer.SupportedGgufNames)}), so llama.cpp would split text differently");
                return data with { Model = "gpt2", Pre = pre, Merges = merges.Select(m => $"{m.Item1} {m.Item2}").ToArray() };
            }
            case SentencePieceBpeTokenizer sentencePiece:
            {
                for (int id = 0; id < tokenizer.VocabSize; id++)
                    if (types[id] == GgufTokenType.Normal && IsByteToken(tokens[id])) types[id] = GgufTokenType.Byte;
                if (tokenizer.UnkId is int unk) types[unk] = GgufTokenType.Unknown;
                return data with { Model = "llama", Pre = "default", Scores = Scores(tokens, merges), AddSpacePrefix = sentencePiece.SpacePrefix != SpacePrefix.Never };
            }
            default:
                throw new NotSupportedException($"{path}: a {tokenizer.GetType().Name} has no GGUF form");
        }
    }

    /// <summary>
    /// llama.cpp's SentencePiece tokenizer merges the adjacent pair whose joined piece scores highest; tokenizer.json lists
    /// merges by rank, so the piece the merge of rank r makes scores −r. Pieces no merge makes score below every merge.
    /// </summary>
    static float[] Scores(string[] tokens, List<(string Left, string Right)> merges)
    {
        var rank = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int r = 0; r < merges.Count; r++) rank.TryAdd(merges[r].Left + merges[r].Right, r);
        return tokens.Select((t, id) => rank.TryGetValue(t, out int r) ? -(float)r : -(float)(merges.Count + id)).ToArray();
    }

    static bool IsByteToken(string token) =>
        token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>' && Uri.IsHexDigit(token[3]) && Uri.IsHexDigit(token[4]);
}
