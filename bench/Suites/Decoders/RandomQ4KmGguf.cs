using SharpTune.Tests.Checkpoints.Gguf;
using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// A Qwen2 GGUF in Q4_K_M's mix of tensor types, written from random blocks directly (no fp32 model is ever made): Q4_K
/// for the token embeddings and most matrices; Q6_K for the head and for attn_v and ffn_down of the first and last
/// eighth of the layers and of every third layer between (about half of them, as llama.cpp's Q4_K_M chooses); norms and
/// biases F32. Block scales are small finite fp16 values, so weights are of order 1/sqrt(fan-in) and activations stay
/// finite; speed does not depend on the values. Every layer's matrix of one shape and type holds the same random bytes
/// (one copy in memory while writing, at its own offset in the file), so writing a 4.7 GB file takes about 1 GB.
/// </summary>
public static class RandomQ4KmGguf
{
    /// <summary>Whether layer <paramref name="layer"/> of <paramref name="layers"/> keeps attn_v and ffn_down in Q6_K.</summary>
    public static bool MoreBits(int layer, int layers) => layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    /// <summary>Writes the file unless it exists; returns its path.</summary>
    public static string Write(Qwen2Shape s, string path)
    {
        if (File.Exists(path)) return path;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        const string arch = "qwen2";
        var w = new GgufWriter()
            .Set("general.architecture", arch)
            .Set("general.name", "random " + s.Name + ", Q4_K_M blocks")
            .Set("general.file_type", 15u)                                     // LLAMA_FTYPE_MOSTLY_Q4_K_M
            .Set($"{arch}.context_length", (uint)s.Context)
            .Set($"{arch}.embedding_length", (uint)s.Hidden)
            .Set($"{arch}.block_count", (uint)s.Layers)
            .Set($"{arch}.feed_forward_length", (uint)s.Intermediate)
            .Set($"{arch}.attention.head_count", (uint)s.Heads)
            .Set($"{arch}.attention.head_count_kv", (uint)s.KeyValueHeads)
            .Set($"{arch}.attention.layer_norm_rms_epsilon", 1e-6f)
            .Set($"{arch}.rope.freq_base", 1e6f)
            .Set($"{arch}.rope.dimension_count", (uint)s.HeadDim);
        GgufTestModels.AddVocabulary(w, s.Vocab);

        var random = new Random(2026);
        var shared = new Dictionary<(int, int, GgufTensorType), byte[]>();
        byte[] Blocks(int rows, int columns, GgufTensorType type)
        {
            if (!shared.TryGetValue((rows, columns, type), out var data))
                shared[(rows, columns, type)] = data = RandomBlocks(random, (long)rows * columns, type, columns);
            return data;
        }
        void Matrix(string name, int rows, int columns, GgufTensorType type) => w.AddRawTensor(name, [rows, columns], type, Blocks(rows, columns, type));
        void Vector(string name, Tensor t) => w.AddTensor(name, t, GgufTensorType.F32);

        using var scope = NewDisposeScope();
        manual_seed(2026);
        int q = s.Heads * s.HeadDim, kv = s.KeyValueHeads * s.HeadDim;
        Matrix("token_embd.weight", s.Vocab, s.Hidden, GgufTensorType.Q4_K);
        for (int n = 0; n < s.Layers; n++)
        {
            string g = $"blk.{n}.";
            var more = MoreBits(n, s.Layers) ? GgufTensorType.Q6_K : GgufTensorType.Q4_K;
            Vector(g + "attn_norm.weight", ones(s.Hidden));
            Matrix(g + "attn_q.weight", q, s.Hidden, GgufTensorType.Q4_K);
            Vector(g + "attn_q.bias", randn(q).mul_(0.02));
            Matrix(g + "attn_k.weight", kv, s.Hidden, GgufTensorType.Q4_K);
            Vector(g + "attn_k.bias", randn(kv).mul_(0.02));
            Matrix(g + "attn_v.weight", kv, s.Hidden, more);
            Vector(g + "attn_v.bias", randn(kv).mul_(0.02));
            Matrix(g + "attn_output.weight", s.Hidden, q, GgufTensorType.Q4_K);
            Vector(g + "ffn_norm.weight", ones(s.Hidden));
            Matrix(g + "ffn_gate.weight", s.Intermediate, s.Hidden, GgufTensorType.Q4_K);
            Matrix(g + "ffn_up.weight", s.Intermediate, s.Hidden, GgufTensorType.Q4_K);
            Matrix(g + "ffn_down.weight", s.Hidden, s.Intermediate, more);
        }
        Vector("output_norm.weight", ones(s.Hidden));
        if (!s.Tied) Matrix("output.weight", s.Vocab, s.Hidden, GgufTensorType.Q6_K);
        w.Save(path);
        return path;
    }

    /// <summary>
    /// Random valid blocks of <paramref name="count"/> values. Q4_K (144 bytes per 256: fp16 d, fp16 dmin, 12 bytes of
    /// 6-bit scales and mins, 128 bytes of 4-bit quants): value = d·scale·q − dmin·min, so d is chosen for a largest
    /// value near 3/sqrt(fan-in). Q6_K (210 bytes per 256: 128 bytes of low 4 bits, 64 of high 2 bits, 16 signed 8-bit
    /// scales, fp16 d): value = d·scale·(q − 32), scales kept within ±32.
    /// </summary>
    static byte[] RandomBlocks(Random random, long count, GgufTensorType type, int fanIn)
    {
        long blocks = count / 256;
        int size = GgufTensorTypes.BlockBytes(type);
        var data = new byte[blocks * size];
        random.NextBytes(data);
        float top = 3 / MathF.Sqrt(fanIn);
        var span = data.AsSpan();
        for (long b = 0; b < blocks; b++)
        {
            var block = span.Slice((int)(b * size), size);
            if (type == GgufTensorType.Q4_K)
            {
                Half d = (Half)(top / (63 * 15)), dmin = (Half)(top / 63 / 8);
                BitConverter.TryWriteBytes(block, BitConverter.HalfToUInt16Bits(d));
                BitConverter.TryWriteBytes(block[2..], BitConverter.HalfToUInt16Bits(dmin));
            }
            else
            {
                for (int i = 192; i < 208; i++) block[i] = (byte)(sbyte)(block[i] % 65 - 32);
                BitConverter.TryWriteBytes(block[208..], BitConverter.HalfToUInt16Bits((Half)(top / (32 * 32))));
            }
        }
        return data;
    }
}
