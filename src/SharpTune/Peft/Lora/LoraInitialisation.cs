using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lora;

/// <summary>
/// The starting pairs that read the pretrained weight, as PEFT's <c>pissa_init</c> and <c>olora_init</c> compute them, and
/// the per-row norms DoRA needs. Weights here are (out, in) float32, whatever the layer's own layout.
/// </summary>
static class LoraInitialisation
{
    /// <summary>
    /// PiSSA (Meng et al. 2024): W = U S Vᵀ; the pair holds the top r singular triplets, split evenly,
    /// <c>A = sqrt(S_r / s) V_rᵀ</c> (r, in), <c>B = U_r sqrt(S_r / s)</c> (out, r), so <c>s B A</c> is W's best rank-r part.
    /// </summary>
    public static (Tensor A, Tensor B) Pissa(Tensor weight, int r, double scaling)
    {
        using var scope = NewDisposeScope();
        var (u, s, vh) = linalg.svd(weight, fullMatrices: false);   // (out, k), (k), (k, in)
        var root = (s[..r] / scaling).sqrt();                        // (r)
        var a = root.unsqueeze(1) * vh[..r];                         // (r, in)
        var b = u[.., ..r] * root.unsqueeze(0);                      // (out, r)
        return (a.contiguous().MoveToOuterDisposeScope(), b.contiguous().MoveToOuterDisposeScope());
    }

    /// <summary>OLoRA (Büyükakyüz 2024): W = Q R; <c>B = Q[:, :r]</c> (out, r), <c>A = R[:r]</c> (r, in), no scaling folded in (as PEFT).</summary>
    public static (Tensor A, Tensor B) Olora(Tensor weight, int r)
    {
        using var scope = NewDisposeScope();
        var (q, rr) = linalg.qr(weight);                             // (out, k), (k, in)
        return (rr[..r].contiguous().MoveToOuterDisposeScope(), q[.., ..r].contiguous().MoveToOuterDisposeScope());
    }

    /// <summary>Rows of a stored matrix dequantized per tile: at most this many bytes of float32 at a time (tests set it small).</summary>
    internal static long TileBytes { get; set; } = 8L << 20;

    /// <summary>
    /// <c>||W_i + D_i||₂</c> for every row i of a stored (out, in) matrix, one tile of rows at a time: each tile is dequantized
    /// from its blocks (<see cref="QuantizedKernels.DequantizeRows(QuantizedMatrix, int, int, float*)"/>), <paramref name="delta"/>
    /// gives the same rows of the update, and only the norms are kept, so the matrix is never dense whole.
    /// </summary>
    /// <param name="delta">(first, count) to the update's rows (count, in), float32.</param>
    public static unsafe Tensor StoredRowNorms(QuantizedMatrix stored, Func<long, long, Tensor> delta)
    {
        var norms = empty(stored.Rows, ScalarType.Float32);
        int tile = (int)Math.Clamp(TileBytes / (4L * stored.Columns), 1, stored.Rows);
        using var buffer = empty(tile, stored.Columns, ScalarType.Float32);
        for (int first = 0; first < stored.Rows; first += tile)
        {
            using var scope = NewDisposeScope();
            int count = Math.Min(tile, stored.Rows - first);
            var rows = buffer[..count];
            fixed (byte* p = buffer.bytes) QuantizedKernels.DequantizeRows(stored, first, count, (float*)p);
            norms.narrow(0, first, count).copy_(linalg.vector_norm(rows + delta(first, count), dims: [1]));
        }
        return norms;
    }
}
