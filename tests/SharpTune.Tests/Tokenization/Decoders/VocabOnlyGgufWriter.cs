using System.Text;

namespace SharpTune.Tests.Tokenization.Decoders;

/// <summary>
/// TEST-ONLY: writes a GGUF v3 file with metadata and no tensors, so llama.cpp can load just a vocabulary
/// (<c>ModelParams.VocabOnly</c>) as a reference tokenizer. The library's own GGUF writer lives in Checkpoints/Gguf.
/// </summary>
static class VocabOnlyGgufWriter
{
    const uint TypeU32 = 4, TypeI32 = 5, TypeF32 = 6, TypeBool = 7, TypeString = 8, TypeArray = 9;

    public static void Write(string path, IReadOnlyList<(string Key, object Value)> metadata)
    {
        using var w = new BinaryWriter(File.Create(path), Encoding.UTF8);
        w.Write("GGUF"u8);
        w.Write(3u);                 // version
        w.Write(0UL);                // tensor count
        w.Write((ulong)metadata.Count);
        foreach (var (key, value) in metadata)
        {
            WriteString(w, key);
            switch (value)
            {
                case uint u: w.Write(TypeU32); w.Write(u); break;
                case float f: w.Write(TypeF32); w.Write(f); break;
                case bool b: w.Write(TypeBool); w.Write((byte)(b ? 1 : 0)); break;
                case string s: w.Write(TypeString); WriteString(w, s); break;
                case string[] a: WriteArrayHeader(w, TypeString, a.Length); foreach (var s in a) WriteString(w, s); break;
                case int[] a: WriteArrayHeader(w, TypeI32, a.Length); foreach (var i in a) w.Write(i); break;
                case float[] a: WriteArrayHeader(w, TypeF32, a.Length); foreach (var f in a) w.Write(f); break;
                default: throw new ArgumentException($"unsupported metadata value for {key}: {value.GetType()}");
            }
        }
        while (w.BaseStream.Position % 32 != 0) w.Write((byte)0); // alignment before the (empty) data section
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

    static void WriteArrayHeader(BinaryWriter w, uint elementType, int count)
    {
        w.Write(TypeArray);
        w.Write(elementType);
        w.Write((ulong)count);
    }

    static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }
}
