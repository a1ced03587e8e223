using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// A Hugging Face tokenizer folder as GGUF tokenizer data (<c>tokenizer.ggml.*</c>), as llama.cpp's
/// <c>convert_hf_to_gguf.py</c> writes it: byte-level BPE becomes model "gpt2" with its merges and the pre-tokenizer
/// named by the preset its regexes equal; SentencePiece BPE becomes model "llama" with scores that order the merges as
/// the merges list does. Added tokens become control (special) or user-defined tokens; ids missing from the
/// vocabulary and rows the model has beyond it become unused <c>[PAD{id}]</c> tokens, since llama.cpp wants one token
/// per embedding row. What llama.cpp's tokenizers cannot reproduce is refused by name. The other way, GGUF tokenizer
/// data becomes a <c>tokenizer.json</c> and <c>tokenizer_config.json</c> that tokenize as llama.cpp does.
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

    /// <summary>
    /// Writes <c>tokenizer.json</c> and <c>tokenizer_config.json</c> into <paramref name="folder"/> for GGUF tokenizer data:
    /// "gpt2" as byte-level BPE with its merges and the pre-tokenizer's regexes as Split steps; "llama" as BPE with byte
    /// fallback whose merges are every split of a piece into two pieces, ranked by the piece's score (the order llama.cpp's
    /// SentencePiece tokenizer merges in, as transformers' SentencePiece converter lists them). Returns the files written.
    /// </summary>
    public static IReadOnlyList<string> ToHuggingFace(DecoderTokenizerData data, string folder, string source)
    {
        var tokens = data.Tokens;
        var types = data.TokenTypes ?? new int[tokens.Length];
        var vocab = new JsonObject();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int id = 0; id < tokens.Length; id++)
            if (seen.Add(tokens[id])) vocab[tokens[id]] = id;
        var added = new JsonArray();
        for (int id = 0; id < tokens.Length; id++)
            if (types[id] is GgufTokenType.Control or GgufTokenType.Unknown or GgufTokenType.UserDefined)
                added.Add(new JsonObject
                {
                    ["id"] = id, ["content"] = tokens[id], ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                    ["normalized"] = false, ["special"] = types[id] != GgufTokenType.UserDefined,
                });
        var model = new JsonObject { ["type"] = "BPE", ["dropout"] = null };
        var root = new JsonObject { ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = added };
        bool addBos;
        switch (data.Model)
        {
            case "gpt2":
            {
                var (pre, ignoreMerges, defaultAddBos) = ByteLevelPreTokenizer.ForGguf(data.Pre, source);
                addBos = data.AddBos ?? defaultAddBos;
                var steps = new JsonArray();
                foreach (string pattern in pre.Patterns)
                    steps.Add(new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = pattern }, ["behavior"] = "Isolated", ["invert"] = false });
                steps.Add(new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false });
                root["normalizer"] = null;
                root["pre_tokenizer"] = new JsonObject { ["type"] = "Sequence", ["pretokenizers"] = steps };
                root["post_processor"] = null;
                root["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false };
                model["ignore_merges"] = ignoreMerges;
                model["byte_fallback"] = false;
                model["merges"] = new JsonArray((data.Merges ?? throw new InvalidDataException($"{source}: tokenizer.ggml.merges is missing"))
                    .Select(m => (JsonNode?)m).ToArray());
                break;
            }
            case "llama":
            {
                addBos = data.AddBos ?? true;
                var scores = data.Scores ?? throw new InvalidDataException($"{source}: tokenizer.ggml.scores is missing");
                bool prefix = data.AddSpacePrefix ?? true;
                var normalizers = new JsonArray();
                if (prefix) normalizers.Add(new JsonObject { ["type"] = "Prepend", ["prepend"] = "\u2581" });
                normalizers.Add(new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "\u2581" });
                var decoders = new JsonArray
                {
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "\u2581" }, ["content"] = " " },
                    new JsonObject { ["type"] = "ByteFallback" },
                    new JsonObject { ["type"] = "Fuse" },
                };
                if (prefix) decoders.Add(new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 });
                root["normalizer"] = new JsonObject { ["type"] = "Sequence", ["normalizers"] = normalizers };
                root["pre_tokenizer"] = null;
                root["post_processor"] = null;
                root["decoder"] = new JsonObject { ["type"] = "Sequence", ["decoders"] = decoders };
                model["unk_token"] = data.Unk is int unk ? tokens[unk] : null;
                model["fuse_unk"] = true;
                model["byte_fallback"] = true;
                // As pairs, not "left right" strings: a piece may hold a space.
                model["merges"] = new JsonArray(MergesFromScores(tokens, scores).Select(m => (JsonNode?)new JsonArray(m.Left, m.Right)).ToArray());
                break;
            }
            default:
                throw new NotSupportedException($"{source}: tokenizer.ggml.model '{data.Model}' has no tokenizer.json form here (gpt2, llama)");
        }
        model["vocab"] = vocab;
        root["model"] = model;

        string? Text(int? id) => id is int i ? tokens[i] : null;
        var config = new JsonObject
        {
            ["tokenizer_class"] = "PreTrainedTokenizerFast",
            ["add_bos_token"] = addBos,
            ["add_eos_token"] = data.AddEos ?? false,
            ["bos_token"] = Text(data.Bos),
            ["eos_token"] = Text(data.Eos),
            ["unk_token"] = Text(data.Unk),
            ["pad_token"] = Text(data.Pad),
        };
        if (data.ChatTemplate is not null) config["chat_template"] = data.ChatTemplate;
        Directory.CreateDirectory(folder);
        string tokenizerPath = Path.Combine(folder, "tokenizer.json"), configPath = Path.Combine(folder, "tokenizer_config.json");
        var options = new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        File.WriteAllText(tokenizerPath, root.ToJsonString(options) + "\n");
        File.WriteAllText(configPath, config.ToJsonString(options) + "\n");
        return [tokenizerPath, configPath];
    }

    /// <summary>Every split of a piece into two pieces of the vocabulary, highest-scoring piece first (ties: lower id first).</summary>
    static List<(string Left, string Right)> MergesFromScores(string[] tokens, float[] scores)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < tokens.Length; id++) ids.TryAdd(tokens[id], id);
        var merges = new List<(float Score, int Id, (string, string) Merge)>();
        for (int id = 0; id < tokens.Length; id++)
        {
            string piece = tokens[id];
            for (int split = 1; split < piece.Length; split++)
            {
                if (char.IsLowSurrogate(piece[split])) continue; // split between code points only
                string left = piece[..split], right = piece[split..];
                if (ids.ContainsKey(left) && ids.ContainsKey(right)) merges.Add((scores[id], id, (left, right)));
            }
        }
        return merges.OrderByDescending(m => m.Score).ThenBy(m => m.Id).Select(m => m.Merge).ToList();
    }
}
