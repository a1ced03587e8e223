using System.Text.Json;
using System.Text.RegularExpressions;

namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// Reads a Hugging Face tokenizer folder: <c>tokenizer.json</c> (model BPE; ByteLevel or ▁/byte-fallback
/// handling), <c>tokenizer_config.json</c> (add_bos_token, add_eos_token, special token strings, chat_template),
/// <c>chat_template.jinja</c> and <c>generation_config.json</c> (extra eos ids). Errors name the file and field.
/// </summary>
static class HuggingFaceTokenizerLoader
{
    public static IDecoderTokenizer Load(string folder)
    {
        var path = Path.Combine(folder, "tokenizer.json");
        if (!File.Exists(path))
            throw new FileNotFoundException($"{folder}: tokenizer.json not found (decoder tokenizers load Hugging Face's tokenizer.json).", path);
        using var doc = ParseJson(path);
        var root = doc.RootElement;
        var model = Field(root, "model", JsonValueKind.Object, path);
        var type = Field(model, "type", JsonValueKind.String, path, "model.type").GetString();
        if (type != "BPE")
            throw new NotSupportedException($"{path}: model.type is '{type}', expected 'BPE' (byte-level or SentencePiece BPE).");

        foreach (var affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (OptionalString(model, affix) is { Length: > 0 } value)
                throw new NotSupportedException($"{path}: model.{affix} is '{value}'; decoder BPE models have none.");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in Field(model, "vocab", JsonValueKind.Object, path, "model.vocab").EnumerateObject())
            vocab[entry.Name] = entry.Value.ValueKind == JsonValueKind.Number && entry.Value.TryGetInt32(out var id) && id >= 0
                ? id : throw new InvalidDataException($"{path}: model.vocab['{entry.Name}'] is {entry.Value}, expected a non-negative integer id.");
        var merges = ReadMerges(Field(model, "merges", JsonValueKind.Array, path, "model.merges"), path);
        var added = ReadAddedTokens(root, path);

        int size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(a => a.Id) + 1);
        var tokens = new string[size];
        Array.Fill(tokens, "");
        foreach (var (text, id) in vocab) tokens[id] = text;
        foreach (var a in added) tokens[a.Id] = a.Content;

        var config = LoadConfig(folder, out var configPath);
        var tokenIds = new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        foreach (var a in added) tokenIds[a.Content] = a.Id;
        int? Lookup(string key, string? fallback = null)
        {
            var text = SpecialTokenText(config, key) ?? fallback;
            if (text is null) return null;
            return tokenIds.TryGetValue(text, out var id) ? id
                : throw new InvalidDataException($"{configPath}: {key} '{text}' is not a token of {path}.");
        }
        var (templateBos, templateEos) = TemplateSpecialTokens(root, tokenIds);
        int? bos = Lookup("bos_token") ?? templateBos, eos = Lookup("eos_token") ?? templateEos;
        int? unk = Lookup("unk_token", OptionalString(model, "unk_token")), pad = Lookup("pad_token");
        bool addBos = OptionalBool(config, "add_bos_token") ?? templateBos is not null;
        bool addEos = OptionalBool(config, "add_eos_token") ?? templateEos is not null;

        var setup = new DecoderTokenizerSetup(tokens, added, bos, eos, pad, unk, addBos, addEos,
            GenerationEosIds(folder), ChatTemplate(config, folder), path);
        var preTokenizer = root.TryGetProperty("pre_tokenizer", out var p) && p.ValueKind == JsonValueKind.Object ? p : (JsonElement?)null;
        var normalizer = root.TryGetProperty("normalizer", out var nz) && nz.ValueKind == JsonValueKind.Object ? nz : (JsonElement?)null;
        bool byteLevel = HasType(preTokenizer, "ByteLevel") || root.TryGetProperty("decoder", out var d) && HasType(d, "ByteLevel");
        if (byteLevel)
        {
            var patterns = new List<string>();
            bool addPrefixSpace = false;
            if (preTokenizer is { } pt) CollectPatterns(pt, patterns, ref addPrefixSpace, path, "pre_tokenizer");
            bool nfc = normalizer is { } n && CheckByteLevelNormalizer(n, path, "normalizer");
            return new ByteLevelBpeTokenizer(setup, merges, new ByteLevelPreTokenizer(patterns),
                OptionalBool(model, "ignore_merges") ?? false, addPrefixSpace, nfc);
        }

        var (spacePrefix, split) = SentencePieceSpaces(normalizer, preTokenizer, path);
        return new SentencePieceBpeTokenizer(setup, scores: null, merges, byteTokens: null,
            OptionalBool(model, "byte_fallback") ?? false, spacePrefix, split);
    }

    internal static JsonDocument ParseJson(string path)
    {
        try { return JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message}).", e); }
    }

    internal static JsonElement Field(JsonElement parent, string name, JsonValueKind kind, string path, string? fullName = null)
    {
        if (!parent.TryGetProperty(name, out var value))
            throw new InvalidDataException($"{path}: '{fullName ?? name}' is missing.");
        if (value.ValueKind != kind)
            throw new InvalidDataException($"{path}: '{fullName ?? name}' is {value.ValueKind}, expected {kind}.");
        return value;
    }

    internal static List<(string, string)> ReadMerges(JsonElement merges, string path)
    {
        var result = new List<(string, string)>(merges.GetArrayLength());
        int i = 0;
        foreach (var m in merges.EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.String)
                result.AddRange(DecoderTokenizers.ParseMerges([m.GetString()!], path, $"model.merges[{i}]"));
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m.EnumerateArray().All(x => x.ValueKind == JsonValueKind.String))
                result.Add((m[0].GetString()!, m[1].GetString()!));
            else
                throw new InvalidDataException($"{path}: model.merges[{i}] is {m}, expected \"left right\" or [\"left\", \"right\"].");
            i++;
        }
        return result;
    }

    internal static List<AddedToken> ReadAddedTokens(JsonElement root, string path)
    {
        var result = new List<AddedToken>();
        if (!root.TryGetProperty("added_tokens", out var list) || list.ValueKind == JsonValueKind.Null) return result;
        int i = 0;
        foreach (var t in list.EnumerateArray())
        {
            var id = Field(t, "id", JsonValueKind.Number, path, $"added_tokens[{i}].id").GetInt32();
            var content = Field(t, "content", JsonValueKind.String, path, $"added_tokens[{i}].content").GetString()!;
            result.Add(new AddedToken(content, id, OptionalBool(t, "special") ?? false));
            i++;
        }
        return result;
    }

    static JsonElement? LoadConfig(string folder, out string configPath)
    {
        configPath = Path.Combine(folder, "tokenizer_config.json");
        if (!File.Exists(configPath)) return null;
        using var doc = ParseJson(configPath);
        return doc.RootElement.Clone();
    }

    /// <summary>A special token in tokenizer_config.json: a string or an AddedToken object with "content".</summary>
    static string? SpecialTokenText(JsonElement? config, string key) =>
        config is { } c && c.TryGetProperty(key, out var v)
            ? v.ValueKind switch
            {
                JsonValueKind.String => v.GetString(),
                JsonValueKind.Object when v.TryGetProperty("content", out var content) => content.GetString(),
                _ => null,
            }
            : null;

    static bool? OptionalBool(JsonElement? parent, string name) =>
        parent is { } p && p.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    static string? OptionalString(JsonElement parent, string name) =>
        parent.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    /// <summary>BOS/EOS from a TemplateProcessing post-processor (Llama 3 adds &lt;|begin_of_text|&gt; this way).</summary>
    static (int? Bos, int? Eos) TemplateSpecialTokens(JsonElement root, Dictionary<string, int> tokenIds)
    {
        if (!root.TryGetProperty("post_processor", out var pp) || FindType(pp, "TemplateProcessing") is not { } template
            || !template.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array) return (null, null);
        int? bos = null, eos = null;
        bool seenSequence = false;
        foreach (var piece in single.EnumerateArray())
        {
            if (piece.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
            if (piece.TryGetProperty("SpecialToken", out var st) && st.TryGetProperty("id", out var idText)
                && tokenIds.TryGetValue(idText.GetString() ?? "", out var id))
            {
                if (seenSequence) eos ??= id; else bos ??= id;
            }
        }
        return (bos, eos);
    }

    static int[] GenerationEosIds(string folder)
    {
        var path = Path.Combine(folder, "generation_config.json");
        if (!File.Exists(path)) return [];
        using var doc = ParseJson(path);
        if (!doc.RootElement.TryGetProperty("eos_token_id", out var eos)) return [];
        return eos.ValueKind switch
        {
            JsonValueKind.Number => [eos.GetInt32()],
            JsonValueKind.Array => eos.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Number).Select(e => e.GetInt32()).ToArray(),
            _ => [],
        };
    }

    static string? ChatTemplate(JsonElement? config, string folder)
    {
        if (config is { } c && c.TryGetProperty("chat_template", out var t))
        {
            if (t.ValueKind == JsonValueKind.String) return t.GetString();
            if (t.ValueKind == JsonValueKind.Array)
            {
                var named = t.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Object).ToList();
                var chosen = named.FirstOrDefault(e => OptionalString(e, "name") == "default");
                if (chosen.ValueKind != JsonValueKind.Object && named.Count > 0) chosen = named[0];
                if (chosen.ValueKind == JsonValueKind.Object) return OptionalString(chosen, "template");
            }
        }
        var jinja = Path.Combine(folder, "chat_template.jinja");
        return File.Exists(jinja) ? File.ReadAllText(jinja) : null;
    }

    static IEnumerable<JsonElement> Children(JsonElement node)
    {
        foreach (var key in new[] { "pretokenizers", "normalizers", "decoders", "processors" })
            if (node.TryGetProperty(key, out var list) && list.ValueKind == JsonValueKind.Array)
                foreach (var child in list.EnumerateArray()) yield return child;
    }

    static JsonElement? FindType(JsonElement node, string type)
    {
        if (node.ValueKind != JsonValueKind.Object) return null;
        if (OptionalString(node, "type") == type) return node;
        foreach (var child in Children(node)) if (FindType(child, type) is { } found) return found;
        return null;
    }

    static bool HasType(JsonElement? node, string type) => node is { } n && FindType(n, type) is not null;

    static void CollectPatterns(JsonElement node, List<string> patterns, ref bool addPrefixSpace, string path, string at)
    {
        var type = OptionalString(node, "type");
        switch (type)
        {
            case "Sequence":
                int i = 0;
                foreach (var child in Children(node)) CollectPatterns(child, patterns, ref addPrefixSpace, path, $"{at}.pretokenizers[{i++}]");
                break;
            case "ByteLevel":
                addPrefixSpace |= OptionalBool(node, "add_prefix_space") ?? false;
                if (OptionalBool(node, "use_regex") ?? true) patterns.Add(ByteLevelPreTokenizer.Gpt2Pattern);
                break;
            case "Digits":
                patterns.Add(OptionalBool(node, "individual_digits") ?? false ? ByteLevelPreTokenizer.IndividualDigitsPattern : @"\p{N}+");
                break;
            case "Split":
                var behavior = OptionalString(node, "behavior");
                if (behavior != "Isolated" || (OptionalBool(node, "invert") ?? false))
                    throw new NotSupportedException($"{path}: {at}.behavior is '{behavior}' (invert {OptionalBool(node, "invert")}), only 'Isolated' without invert is supported.");
                var pattern = Field(node, "pattern", JsonValueKind.Object, path, $"{at}.pattern");
                patterns.Add(pattern.TryGetProperty("Regex", out var r) ? r.GetString()!
                    : pattern.TryGetProperty("String", out var s) ? Regex.Escape(s.GetString()!)
                    : throw new InvalidDataException($"{path}: {at}.pattern has neither 'Regex' nor 'String'."));
                break;
            default:
                throw new NotSupportedException($"{path}: {at}.type '{type}' is not supported for byte-level BPE (ByteLevel, Split, Digits, Sequence are).");
        }
    }

    static bool CheckByteLevelNormalizer(JsonElement node, string path, string at)
    {
        var type = OptionalString(node, "type");
        if (type == "NFC") return true;
        if (type == "Sequence") return Children(node).Select((c, i) => CheckByteLevelNormalizer(c, path, $"{at}.normalizers[{i}]")).ToList().Any(x => x);
        throw new NotSupportedException($"{path}: {at}.type '{type}' is not supported for byte-level BPE (NFC is).");
    }

    /// <summary>How a SentencePiece-style tokenizer.json marks spaces: legacy Prepend+Replace normalizer or Metaspace.</summary>
    static (SpacePrefix, bool Split) SentencePieceSpaces(JsonElement? normalizer, JsonElement? preTokenizer, string path)
    {
        if (FindTypeOrNull(preTokenizer, "Metaspace") is { } meta)
        {
            var scheme = OptionalString(meta, "prepend_scheme") ?? ((OptionalBool(meta, "add_prefix_space") ?? true) ? "always" : "never");
            var prefix = scheme switch
            {
                "always" => SpacePrefix.Always, "first" => SpacePrefix.First, "never" => SpacePrefix.Never,
                _ => throw new NotSupportedException($"{path}: pre_tokenizer.prepend_scheme '{scheme}' is not supported (always, first, never)."),
            };
            return (prefix, OptionalBool(meta, "split") ?? true);
        }
        if (FindTypeOrNull(normalizer, "Replace") is null)
            throw new NotSupportedException(
                $"{path}: a BPE tokenizer.json needs a ByteLevel pre_tokenizer/decoder or SentencePiece space handling (normalizer Replace ' ' -> '\u2581' or a Metaspace pre_tokenizer).");
        return (FindTypeOrNull(normalizer, "Prepend") is not null ? SpacePrefix.Always : SpacePrefix.Never, false);
    }

    static JsonElement? FindTypeOrNull(JsonElement? node, string type) => node is { } n ? FindType(n, type) : null;
}
