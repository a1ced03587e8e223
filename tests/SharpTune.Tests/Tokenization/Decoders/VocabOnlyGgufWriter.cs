using SharpTune.Checkpoints.Gguf;

namespace SharpTune.Tests.Tokenization.Decoders;

/// <summary>
/// Metadata-only GGUF files (no tensors), so llama.cpp can load just a vocabulary (<c>ModelParams.VocabOnly</c>) as a
/// reference tokenizer; written with the library's <see cref="GgufWriter"/>.
/// </summary>
static class VocabOnlyGgufWriter
{
    public static void Write(string path, IReadOnlyList<(string Key, object Value)> metadata)
    {
        var writer = new GgufWriter();
        foreach (var (key, value) in metadata) writer.Set(key, value);
        writer.Save(path);
    }

    /// <summary>The llama hyper-parameters llama.cpp reads before the vocabulary, plus <paramref name="tokenizer"/>.</summary>
    public static List<(string, object)> LlamaMetadata(IEnumerable<(string, object)> tokenizer) =>
    [
        ("general.architecture", "llama"),
        ("general.name", "vocab-only test"),
        ("llama.context_length", 128u),
        ("llama.embedding_length", 32u),
        ("llama.block_count", 1u),
        ("llama.feed_forward_length", 64u),
        ("llama.attention.head_count", 4u),
        ("llama.attention.head_count_kv", 4u),
        ("llama.rope.dimension_count", 8u),
        ("llama.attention.layer_norm_rms_epsilon", 1e-5f),
        .. tokenizer,
    ];
}
