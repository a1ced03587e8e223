using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Gguf;

/// <summary>
/// The row permutation llama.cpp's converter applies to Llama q_proj/k_proj weights and biases.
/// Hugging Face rotates halves (pairs i, i + d/2 within a head of size d); llama.cpp's llama rotates
/// adjacent pairs, so gguf_row[h·d + 2i + j] = hf_row[h·d + j·d/2 + i] for i &lt; d/2, j ∈ {0, 1}.
/// Only rows move: works for weights (out, in) and biases (out).
/// </summary>
public static class GgufPermutation
{
    /// <summary>Hugging Face rows → llama.cpp rows. <paramref name="heads"/> is n_head for q, n_head_kv for k.</summary>
    public static Tensor ToLlamaCpp(Tensor tensor, int heads)
    {
        var (rows, d, rest) = Split(tensor, heads);
        // (heads, 2, d/2, ...) → swap the pair axis inward → (heads, d/2, 2, ...)
        return tensor.reshape([heads, 2, d / 2, .. rest]).transpose(1, 2).reshape([rows, .. rest]);
    }

    /// <summary>llama.cpp rows → Hugging Face rows: the inverse of <see cref="ToLlamaCpp"/>.</summary>
    public static Tensor FromLlamaCpp(Tensor tensor, int heads)
    {
        var (rows, d, rest) = Split(tensor, heads);
        return tensor.reshape([heads, d / 2, 2, .. rest]).transpose(1, 2).reshape([rows, .. rest]);
    }

    static (long Rows, long HeadDim, long[] Tail) Split(Tensor tensor, int heads)
    {
        if (tensor.dim() is not (1 or 2)) throw new ArgumentException($"expected a weight (out, in) or bias (out), got shape [{string.Join(", ", tensor.shape)}]");
        long rows = tensor.shape[0];
        if (heads <= 0 || rows % heads != 0 || rows / heads % 2 != 0)
            throw new ArgumentException($"{rows} rows do not split into {heads} heads of an even size");
        return (rows, rows / heads, tensor.shape[1..]);
    }
}
