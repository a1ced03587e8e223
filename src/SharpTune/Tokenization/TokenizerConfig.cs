using System.Text.Json;
using System.Text.Json.Serialization;

namespace SharpTune.Tokenization;

/// <summary>
/// The fields of a Hugging Face <c>tokenizer_config.json</c> that a BERT WordPiece tokenizer uses. Property
/// names follow the file, and defaults follow transformers' <c>BertTokenizer</c>, so a missing field means
/// what it means there.
/// </summary>
public sealed record TokenizerConfig
{
    [JsonPropertyName("do_lower_case")] public bool DoLowerCase { get; init; } = true;

    /// <summary>null: strip accents exactly when lowercasing, which is what transformers does.</summary>
    [JsonPropertyName("strip_accents")] public bool? StripAccents { get; init; }

    /// <summary>Put each CJK ideograph in a word of its own (the original BERT's Chinese handling).</summary>
    [JsonPropertyName("tokenize_chinese_chars")] public bool TokenizeChineseChars { get; init; } = true;

    [JsonPropertyName("unk_token"), JsonConverter(typeof(SpecialTokenConverter))] public string UnkToken { get; init; } = "[UNK]";
    [JsonPropertyName("cls_token"), JsonConverter(typeof(SpecialTokenConverter))] public string ClsToken { get; init; } = "[CLS]";
    [JsonPropertyName("sep_token"), JsonConverter(typeof(SpecialTokenConverter))] public string SepToken { get; init; } = "[SEP]";
    [JsonPropertyName("pad_token"), JsonConverter(typeof(SpecialTokenConverter))] public string PadToken { get; init; } = "[PAD]";
    [JsonPropertyName("mask_token"), JsonConverter(typeof(SpecialTokenConverter))] public string MaskToken { get; init; } = "[MASK]";

    /// <summary>Whether accents are removed after the decision rule of <see cref="StripAccents"/>.</summary>
    [JsonIgnore] public bool ShouldStripAccents => StripAccents ?? DoLowerCase;

    /// <summary>The special tokens, in the order a message about a missing one should list them.</summary>
    [JsonIgnore] public IReadOnlyList<(string Field, string Token)> SpecialTokens =>
        [("unk_token", UnkToken), ("cls_token", ClsToken), ("sep_token", SepToken), ("pad_token", PadToken), ("mask_token", MaskToken)];

    /// <summary>Reads and validates a <c>tokenizer_config.json</c>.</summary>
    public static TokenizerConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Tokenizer configuration not found: {path}", path);
        TokenizerConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<TokenizerConfig>(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid tokenizer_config.json ({e.Message})", e);
        }
        if (config is null) throw new InvalidDataException($"{path}: tokenizer_config.json is empty");
        return config.Validate(path);
    }

    /// <summary>Throws <see cref="InvalidDataException"/> naming the first special token that is empty.</summary>
    public TokenizerConfig Validate(string source = "tokenizer config")
    {
        foreach (var (field, token) in SpecialTokens)
            if (string.IsNullOrWhiteSpace(token))
                throw new InvalidDataException($"{source}: {field} must be a non-empty token, got '{token}'");
        return this;
    }

    /// <summary>
    /// transformers writes a special token either as a string or as an AddedToken object
    /// (<c>{"content": "[UNK]", "lstrip": false, ...}</c>); only its text matters here.
    /// </summary>
    sealed class SpecialTokenConverter : JsonConverter<string>
    {
        public override string Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            if (reader.TokenType == JsonTokenType.String) return reader.GetString()!;
            if (reader.TokenType == JsonTokenType.StartObject)
            {
                using var doc = JsonDocument.ParseValue(ref reader);
                if (doc.RootElement.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
                    return content.GetString()!;
                throw new JsonException("special token object has no string 'content'");
            }
            throw new JsonException($"special token must be a string or an object with 'content', got {reader.TokenType}");
        }

        public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) =>
            writer.WriteStringValue(value);
    }
}
