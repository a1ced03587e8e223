namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// Tokenizer data as a GGUF file stores it (<c>tokenizer.ggml.*</c> keys), filled by the GGUF reader and turned
/// into a tokenizer by <see cref="DecoderTokenizers.FromData"/>.
/// </summary>
/// <param name="Model"><c>tokenizer.ggml.model</c>: "gpt2" (byte-level BPE) or "llama" (SentencePiece BPE).</param>
/// <param name="Pre"><c>tokenizer.ggml.pre</c>: the pre-tokenizer ("gpt-2", "llama-bpe", "qwen2", "smollm", "default").</param>
/// <param name="Tokens"><c>tokenizer.ggml.tokens</c>, indexed by id.</param>
/// <param name="TokenTypes"><c>tokenizer.ggml.token_type</c>: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.</param>
/// <param name="Merges"><c>tokenizer.ggml.merges</c> ("a b", by rank), required for "gpt2".</param>
/// <param name="Scores"><c>tokenizer.ggml.scores</c>, required for "llama" (higher merges first).</param>
/// <param name="AddSpacePrefix"><c>tokenizer.ggml.add_space_prefix</c>: "llama" prepends ▁ to the text unless false.</param>
public sealed record DecoderTokenizerData(
    string Model,
    string? Pre,
    string[] Tokens,
    int[]? TokenTypes = null,
    string[]? Merges = null,
    float[]? Scores = null,
    int? Bos = null,
    int? Eos = null,
    int? Unk = null,
    int? Pad = null,
    bool? AddBos = null,
    bool? AddEos = null,
    string? ChatTemplate = null,
    bool? AddSpacePrefix = null);

/// <summary>GGUF token types (<c>tokenizer.ggml.token_type</c>), as llama.cpp numbers them.</summary>
public static class GgufTokenType
{
    public const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6;
}
