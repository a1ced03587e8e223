namespace SharpTune.Checkpoints.Gguf;

/// <summary>
/// What a tokenizer needs from GGUF metadata (<c>tokenizer.ggml.*</c>, <c>tokenizer.chat_template</c>):
/// data only, no tokenizer logic. <see cref="Model"/> is <c>gpt2</c> (byte-level BPE, with
/// <see cref="Merges"/>) or <c>llama</c> (SentencePiece, with <see cref="Scores"/>); token types are
/// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
/// </summary>
public sealed record GgufTokenizerData(
    string Model,
    string? Pre,
    string[] Tokens,
    int[]? TokenTypes,
    string[]? Merges,
    float[]? Scores,
    int? BosTokenId,
    int? EosTokenId,
    int? UnknownTokenId,
    int? PaddingTokenId,
    bool? AddBosToken,
    bool? AddEosToken,
    string? ChatTemplate,
    bool? AddSpacePrefix = null)
{
    /// <summary>The tokenizer data of <paramref name="file"/>, or null when it has no <c>tokenizer.ggml.model</c>.</summary>
    public static GgufTokenizerData? From(GgufFile file)
    {
        if (!file.TryGetString("tokenizer.ggml.model", out string model)) return null;
        string[] tokens = file.GetStringArray("tokenizer.ggml.tokens");
        int[]? types = file.TryGetArray<int>("tokenizer.ggml.token_type", out var t) ? t : null;
        float[]? scores = file.TryGetArray<float>("tokenizer.ggml.scores", out var s) ? s : null;
        CheckLength(file, "tokenizer.ggml.token_type", types?.Length, tokens.Length);
        CheckLength(file, "tokenizer.ggml.scores", scores?.Length, tokens.Length);
        return new GgufTokenizerData(
            model,
            file.TryGetString("tokenizer.ggml.pre", out string pre) ? pre : null,
            tokens,
            types,
            file.TryGetArray<string>("tokenizer.ggml.merges", out var merges) ? merges : null,
            scores,
            Id(file, "tokenizer.ggml.bos_token_id", tokens.Length),
            Id(file, "tokenizer.ggml.eos_token_id", tokens.Length),
            Id(file, "tokenizer.ggml.unknown_token_id", tokens.Length),
            Id(file, "tokenizer.ggml.padding_token_id", tokens.Length),
            file.TryGetBool("tokenizer.ggml.add_bos_token", out bool addBos) ? addBos : null,
            file.TryGetBool("tokenizer.ggml.add_eos_token", out bool addEos) ? addEos : null,
            file.TryGetString("tokenizer.chat_template", out string template) ? template : null,
            file.TryGetBool("tokenizer.ggml.add_space_prefix", out bool prefix) ? prefix : null);
    }

    static void CheckLength(GgufFile file, string key, int? length, int tokens)
    {
        if (length is { } n && n != tokens)
            throw new InvalidDataException($"{file.Path}: metadata '{key}' has {n} entries, expected one per token ({tokens})");
    }

    static int? Id(GgufFile file, string key, int tokens)
    {
        if (!file.TryGetInt(key, out long id)) return null;
        if (id < 0 || id >= tokens)
            throw new InvalidDataException($"{file.Path}: metadata '{key}' = {id} is not a token id (the vocabulary has {tokens} tokens)");
        return (int)id;
    }
}
