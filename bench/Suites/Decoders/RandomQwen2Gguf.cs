using SharpTune.Tests.Checkpoints.Gguf;
using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>The shapes of a Qwen2 decoder written for the speed suite.</summary>
/// <param name="Tied">The head shares the token embeddings (0.5B); false: a separate output.weight (7B).</param>
public sealed record Qwen2Shape(string Name, int Vocab, int Hidden, int Layers, int Heads, int KeyValueHeads, int HeadDim, int Intermediate, int Context,
    bool Tied = true)
{
    /// <summary>Qwen2.5-0.5B: 494M parameters, tied embeddings.</summary>
    public static Qwen2Shape Qwen25_05B { get; } = new("Qwen2.5-0.5B shapes", 151_936, 896, 24, 14, 2, 64, 4864, 32768);

    /// <summary>The same widths with 4 layers and a 32,000-token vocabulary, for --quick.</summary>
    public static Qwen2Shape Quick { get; } = new("Qwen2.5-0.5B widths, 4 layers, vocabulary 32,000", 32_000, 896, 4, 14, 2, 64, 4864, 32768);

    /// <summary>Qwen2.5-7B: 7.6B parameters, a separate head; every row (3584, 18944) a multiple of 256, as the K-quants need.</summary>
    public static Qwen2Shape Qwen25_7B { get; } = new("Qwen2.5-7B shapes", 152_064, 3584, 28, 28, 4, 128, 18944, 32768, Tied: false);

    /// <summary>Qwen2.5-7B's widths with 2 layers and a 32,000-token vocabulary, for --quick.</summary>
    public static Qwen2Shape Quick7B { get; } = new("Qwen2.5-7B widths, 2 layers, vocabulary 32,000", 32_000, 3584, 2, 28, 4, 128, 18944, 32768, Tied: false);

    public long Parameters =>
        (Tied ? 1L : 2L) * Vocab * Hidden + Hidden + Layers * (2L * Hidden                                // embeddings, final norm, layer norms
            + (long)Hidden * Heads * HeadDim * 2 + 2L * Hidden * KeyValueHeads * HeadDim     // q, o, k, v
            + Heads * HeadDim + 2L * KeyValueHeads * HeadDim                                  // q/k/v biases
            + 3L * Hidden * Intermediate);                                                    // gate, up, down
}

/// <summary>
/// A Qwen2 model with random weights written as llama.cpp's converter would (qwen2 q/k rows are not permuted), with a
/// SentencePiece-style vocabulary so llama.cpp accepts the file. Weights are drawn with std 1/sqrt(fan-in), as a trained
/// model's roughly are, so activations and logits stay finite and of order one; speed does not depend on the values.
/// </summary>
public static class RandomQwen2Gguf
{
    /// <summary>Writes the F32 and F16 files of <paramref name="shape"/> into <paramref name="folder"/> unless both exist; returns their paths.</summary>
    public static (string F32, string F16) Write(Qwen2Shape shape, string folder)
    {
        Directory.CreateDirectory(folder);
        string f32 = Path.Combine(folder, "model-f32.gguf"), f16 = Path.Combine(folder, "model-f16.gguf");
        if (File.Exists(f32) && File.Exists(f16)) return (f32, f16);
        using var scope = NewDisposeScope();
        var tensors = RandomTensors(shape);
        Writer(shape, tensors, GgufTensorType.F32, fileType: 0).Save(f32);
        Writer(shape, tensors, GgufTensorType.F16, fileType: 1).Save(f16);
        return (f32, f16);
    }

    /// <summary>The F32 file of <paramref name="shape"/> quantized by llama.cpp's own quantizer into <paramref name="folder"/> (model-&lt;key&gt;.gguf), unless it exists; returns its path.</summary>
    public static string Quantized(Qwen2Shape shape, string folder, string key, LLama.Native.LLamaFtype type)
    {
        string path = Path.Combine(folder, $"model-{key}.gguf");
        if (File.Exists(path)) return path;
        var (f32, _) = Write(shape, folder);
        SharpTune.Tests.Oracle.LlamaCpp.Quantize(f32, path + ".partial", type, threads: 2);
        File.Move(path + ".partial", path);
        return path;
    }

    /// <summary>The folder the decoder suites keep their Qwen2.5-0.5B-shaped files in (deleted by decoder-speed's full run at its end).</summary>
    public static string Folder(bool quick) => Path.Combine(Path.GetTempPath(), "sharptune-decoder-speed", quick ? "quick" : "full");

    /// <summary>GGUF tensor name → (PyTorch shape) tensor.</summary>
    static List<(string Name, Tensor Tensor)> RandomTensors(Qwen2Shape s)
    {
        manual_seed(2026);
        int q = s.Heads * s.HeadDim, kv = s.KeyValueHeads * s.HeadDim;
        Tensor Matrix(int rows, int columns) => randn(rows, columns).mul_(1 / Math.Sqrt(columns));
        var t = new List<(string, Tensor)> { ("token_embd.weight", Matrix(s.Vocab, s.Hidden)) };
        for (int n = 0; n < s.Layers; n++)
        {
            string g = $"blk.{n}.";
            t.Add((g + "attn_norm.weight", ones(s.Hidden)));
            t.Add((g + "attn_q.weight", Matrix(q, s.Hidden)));
            t.Add((g + "attn_q.bias", randn(q).mul_(0.02)));
            t.Add((g + "attn_k.weight", Matrix(kv, s.Hidden)));
            t.Add((g + "attn_k.bias", randn(kv).mul_(0.02)));
            t.Add((g + "attn_v.weight", Matrix(kv, s.Hidden)));
            t.Add((g + "attn_v.bias", randn(kv).mul_(0.02)));
            t.Add((g + "attn_output.weight", Matrix(s.Hidden, q)));
            t.Add((g + "ffn_norm.weight", ones(s.Hidden)));
            t.Add((g + "ffn_gate.weight", Matrix(s.Intermediate, s.Hidden)));
            t.Add((g + "ffn_up.weight", Matrix(s.Intermediate, s.Hidden)));
            t.Add((g + "ffn_down.weight", Matrix(s.Hidden, s.Intermediate)));
        }
        t.Add(("output_norm.weight", ones(s.Hidden)));                          // no output.weight: tied to token_embd
        return t;
    }

    static GgufWriter Writer(Qwen2Shape s, List<(string Name, Tensor Tensor)> tensors, GgufTensorType type, uint fileType)
    {
        const string arch = "qwen2";
        var w = new GgufWriter()
            .Set("general.architecture", arch)
            .Set("general.name", "random " + s.Name)
            .Set("general.file_type", fileType)
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
        // 1-D tensors (norms, biases) stay F32, as llama.cpp's converter keeps them.
        foreach (var (name, tensor) in tensors) w.AddTensor(name, tensor, tensor.dim() == 1 ? GgufTensorType.F32 : type);
        return w;
    }
}
