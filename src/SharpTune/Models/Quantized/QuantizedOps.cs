using System.Runtime.Intrinsics.X86;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Models.Quantized;

/// <summary>
/// Products with a weight kept in its file's blocks (<see cref="QuantizedMatrix"/>, (out, in)), never expanded whole.
/// Few rows (generation, a decode step over a batch of prompts) go through the block kernels, which read each block
/// once per product; many rows (prompt processing, training) dequantize a tile of output rows at a time into a scratch
/// and use libtorch's GEMM, so the tile's dequantization is paid once for all rows. The GEMM computes in
/// <see cref="TileDtype"/> for the block types: bf16 where the CPU multiplies bf16 natively (AVX512-BF16, AMX), twice
/// fp32's rate there, as QLoRA computes over its 4-bit base in bf16.
/// </summary>
/// <remarks>
/// The product is differentiable in its input only: the weight is frozen, so the backward pass gives
/// <c>dX = dY · W</c> through the same tiles and no weight gradient (QLoRA's arrangement, on the CPU).
/// </remarks>
public static class QuantizedOps
{
    /// <summary>Rows up to which the block kernels are used; above, dequantized tiles and GEMM. Measured in bench quant-kernels.</summary>
    public static int KernelRows { get; set; } = 8;

    /// <summary>
    /// Bytes of one dequantized tile: large enough that most of a model's matrices are one tile (a product is then one
    /// GEMM written straight into the result), small beside the weights. The scratch is kept per thread and reused, so a
    /// forward pass does not fault in fresh pages for every product.
    /// </summary>
    public static long TileBytes => scopedTileBytes.Value ?? (32L << 20);

    static readonly AsyncLocal<long?> scopedTileBytes = new();

    /// <summary>Tiles of <paramref name="bytes"/> in this execution context until disposed: for tests of products over many tiles.</summary>
    internal static IDisposable UseTileBytes(long bytes)
    {
        var previous = scopedTileBytes.Value;
        scopedTileBytes.Value = bytes;
        return new Restore(() => scopedTileBytes.Value = previous);
    }

    [ThreadStatic] static Tensor? scratch;
    [ThreadStatic] static Tensor? scratchBf16;
    static readonly AsyncLocal<ScalarType?> scopedTileDtype = new();

    /// <summary>
    /// Whether this CPU multiplies bf16 in hardware (AVX512-BF16's <c>vdpbf16ps</c> or AMX-BF16), where libtorch's bf16
    /// GEMM (oneDNN) runs at about twice its fp32 rate; elsewhere a bf16 GEMM is emulated and slower than fp32.
    /// </summary>
    public static bool NativeBf16 { get; } = HasNativeBf16();

    static bool HasNativeBf16()
    {
        if (!X86Base.IsSupported || !Avx512F.IsSupported || X86Base.CpuId(0, 0).Eax < 7) return false;
        bool avx512Bf16 = (X86Base.CpuId(7, 1).Eax & (1 << 5)) != 0;
        bool amxBf16 = (X86Base.CpuId(7, 0).Edx & (1 << 22)) != 0;
        return avx512Bf16 || amxBf16;
    }

    /// <summary>
    /// The dtype of the many-row GEMMs over a block type's tiles when the activations are float32, for this process:
    /// bfloat16 where <see cref="NativeBf16"/>, float32 elsewhere; SHARPTUNE_TILE_DTYPE=fp32|bf16 chooses. Activations,
    /// weights and the GEMM's result are then rounded to bf16 (relative steps of 2⁻⁸: finer than the 8-bit activation
    /// rounding ggml uses, far finer than the weights' own 4-6 bit steps), the sums accumulated in fp32. Float weights
    /// (F32, F16, BF16 files) are always multiplied at the activations' dtype.
    /// </summary>
    public static ScalarType DefaultTileDtype { get; } = ChooseTileDtype(Environment.GetEnvironmentVariable("SHARPTUNE_TILE_DTYPE"));

    static ScalarType ChooseTileDtype(string? asked) => asked?.Trim().ToLowerInvariant() switch
    {
        null or "" => NativeBf16 ? ScalarType.BFloat16 : ScalarType.Float32,
        "fp32" or "float32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        _ => throw new InvalidOperationException($"SHARPTUNE_TILE_DTYPE={asked}: expected fp32 or bf16"),
    };

    /// <summary>The tile dtype in effect here: <see cref="DefaultTileDtype"/>, or the one a <see cref="UseTileDtype"/> scope set.</summary>
    public static ScalarType TileDtype => scopedTileDtype.Value ?? DefaultTileDtype;

    /// <summary>
    /// Many-row products over block types compute in <paramref name="dtype"/> (float32 or bfloat16) in this execution
    /// context until the result is disposed: for comparisons that need one precision whatever the CPU (tests, benches).
    /// </summary>
    public static IDisposable UseTileDtype(ScalarType dtype)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"tiles are float32 or bfloat16, not {dtype}", nameof(dtype));
        var previous = scopedTileDtype.Value;
        scopedTileDtype.Value = dtype;
        return new Restore(() => scopedTileDtype.Value = previous);
    }

    sealed class Restore(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }

    /// <summary>
    /// A model over stored blocks made to compute in bf16 (<c>--precision bf16</c>; QLoRA's bf16 compute dtype): the frozen
    /// dense parameters (norms, frozen biases) are held in bf16 and the stored embeddings give bf16 rows, so activations,
    /// their saved copies and the products' inputs and results are bf16, as over a bf16 base; what trains stays float32.
    /// Call after the method has frozen the base (what does not require grad is converted).
    /// </summary>
    public static void ComputeInBf16(nn.Module model)
    {
        Models.MixedDtype.HoldFrozenIn(model, ScalarType.BFloat16);
        foreach (var embedding in model.modules().OfType<StoredEmbedding>()) embedding.OutputDtype = ScalarType.BFloat16;
    }

    /// <summary>The dtype a many-row product with <paramref name="w"/> computes in, for activations of <paramref name="activations"/>.</summary>
    internal static ScalarType GemmDtype(QuantizedMatrix w, ScalarType activations) =>
        activations == ScalarType.Float32 && w.Type is not (GgufTensorType.F32 or GgufTensorType.F16 or GgufTensorType.BF16)
            ? TileDtype
            : activations;

    /// <summary>
    /// <c>x Wᵀ + b</c>: (..., in) to (..., out) in x's dtype; differentiable in x (and the bias, when it trains). Under
    /// <paramref name="roundActivations"/> (inference, scoring: modules in eval mode) x is first rounded as ggml rounds
    /// activations for the weight's type (<see cref="ActivationRounding"/>), on both paths, so results agree with llama.cpp's
    /// and with each other; in training the product is the one over the dequantized weight, as QLoRA computes. The
    /// choice follows the module's mode, not the grad mode, so a recomputed (checkpointed) layer computes what it computed.
    /// </summary>
    /// <param name="roundActivations">Round x as ggml does (a module passes <c>!training</c>).</param>
    public static Tensor Linear(Tensor x, QuantizedMatrix weight, Tensor? bias, bool roundActivations)
    {
        if (x.shape[^1] != weight.Columns)
            throw new ArgumentException($"input has {x.shape[^1]} features, the quantized weight takes {weight.Columns}");
        bool differentiable = is_grad_enabled() && (x.requires_grad || bias?.requires_grad == true);
        var result = differentiable
            ? QuantizedLinearFunction.apply(x, new MatrixHandle(weight, roundActivations), bias!)
            : Product(x, weight, roundActivations);
        if (bias is null || differentiable) return result;
        return result.add_(bias);
    }

    /// <summary>The whole weight dequantized to <paramref name="dtype"/> (out, in): for merges and exports, never for products.</summary>
    public static unsafe Tensor Dequantize(QuantizedMatrix weight, ScalarType dtype = ScalarType.Float32)
    {
        var dense = empty(weight.Rows, weight.Columns, ScalarType.Float32);
        fixed (byte* p = dense.bytes) QuantizedKernels.DequantizeRows(weight, 0, weight.Rows, (float*)p);
        if (dtype == ScalarType.Float32) return dense;
        using (dense) return dense.to(dtype);
    }

    /// <summary>
    /// y = x Wᵀ without autograd. (..., in) -> (..., out), in x's dtype. With <paramref name="roundActivations"/> the rows
    /// are rounded as ggml rounds them (the block kernels always compute on such rounded rows; the tile path rounds them
    /// first).
    /// </summary>
    internal static unsafe Tensor Product(Tensor x, QuantizedMatrix w, bool roundActivations)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long[] outShape = [.. x.shape[..^1], w.Rows];
        long n = x.numel() / w.Columns;
        var rows = x.reshape(n, w.Columns);
        // The result is made in its final shape and filled through a (n, out) view of it: a custom autograd function's
        // output must not be a view (a caller adds into it in place, as LoRA does).
        var dtype = n <= KernelRows ? ScalarType.Float32 : x.dtype;
        var y = empty(outShape, dtype);
        var flat = y.view(n, w.Rows);
        if (n <= KernelRows)
        {
            var input = rows.to(ScalarType.Float32).contiguous();
            fixed (byte* px = input.bytes)
            fixed (byte* py = y.bytes)
                QuantizedKernels.MatMul(w, (float*)px, (int)n, (float*)py);
            if (x.dtype != ScalarType.Float32) y = y.to(x.dtype);
        }
        else
        {
            var gemm = GemmDtype(w, x.dtype);
            var input = roundActivations ? ActivationRounding.Apply(rows, w.Type, gemm) : rows.to(gemm);
            ForEachTile(w, gemm, (first, tile) =>
            {
                // One tile in the result's dtype: the GEMM writes the result itself.
                if (tile.shape[0] == w.Rows && gemm == dtype) flat.addmm_(input, tile.t(), beta: 0);
                else flat.narrow(1, first, tile.shape[0]).copy_(input.matmul(tile.t()));
            });
        }
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>dX = dY W: (..., out) -> (..., in), in dY's dtype.</summary>
    internal static Tensor InputGradient(Tensor gradOutput, QuantizedMatrix w)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long[] inShape = [.. gradOutput.shape[..^1], w.Columns];
        long n = gradOutput.numel() / w.Rows;
        var gemm = GemmDtype(w, gradOutput.dtype);
        var rows = gradOutput.reshape(n, w.Rows).to(gemm);
        Tensor? dx = null;
        ForEachTile(w, gemm, (first, tile) =>
        {
            var part = rows.narrow(1, first, tile.shape[0]);
            if (dx is null) dx = part.mm(tile).to(gradOutput.dtype);    // the first tile's product, kept (a fresh tensor)
            else if (gemm == gradOutput.dtype) dx.addmm_(part, tile);
            else dx.add_(part.mm(tile));                                 // tiles summed at dY's precision
        });
        return dx!.reshape(inShape).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Whether the tile path's own work (dequantizing, rounding) runs on the calling thread alone: with libtorch on two
    /// threads or fewer. Between libtorch's GEMMs its OpenMP workers spin on the other cores for a while, and waking the
    /// kernel threads there made both fight for them: a 512-token prompt over Q4_0 took 1.54-1.70 s this way against
    /// 1.84 s threaded, in turns on the project's 2-core AMD EPYC (`decoder-prompt-profile`); the 7B's LoRA step at
    /// 1 x 256 tokens, where the dequantization is a larger share, took 38.0 s against 39.7 s. With more cores the
    /// dequantization is a larger share of a product beside a faster GEMM, and it is split over the kernel threads.
    /// </summary>
    internal static bool FewCores => get_num_threads() <= 2;

    /// <summary>
    /// Dequantizes the weight a tile of output rows at a time into one reused scratch of <paramref name="dtype"/> (bf16
    /// straight from the blocks; float32, or another dtype through a float32 tile) and hands each tile (rows, in) on.
    /// </summary>
    /// <param name="maxRows">At most this many rows a tile (a caller whose per-tile results grow with the tile's rows).</param>
    internal static unsafe void ForEachTile(QuantizedMatrix w, ScalarType dtype, Action<long, Tensor> use, int maxRows = int.MaxValue)
    {
        bool bf16 = dtype == ScalarType.BFloat16;
        int elementBytes = bf16 ? 2 : 4;
        int tileRows = (int)Math.Clamp(Math.Min(TileBytes / ((long)elementBytes * w.Columns), maxRows), Math.Min(16, w.Rows), w.Rows);
        long needed = (long)tileRows * w.Columns;
        ref var kept = ref bf16 ? ref scratchBf16 : ref scratch;
        if (kept is null || kept.numel() < needed)
        {
            kept?.Dispose();
            kept = empty(Math.Max(needed, TileBytes / elementBytes), bf16 ? ScalarType.BFloat16 : ScalarType.Float32).DetachFromDisposeScope();
        }
        using var buffer = kept.narrow(0, 0, needed).view(tileRows, w.Columns);
        using var converted = dtype is ScalarType.Float32 or ScalarType.BFloat16 ? null : empty(tileRows, w.Columns, dtype);
        for (int first = 0; first < w.Rows; first += tileRows)
        {
            int count = Math.Min(tileRows, w.Rows - first);
            fixed (byte* p = buffer.bytes)
            {
                if (bf16) QuantizedKernels.DequantizeRows(w, first, count, (ushort*)p, FewCores);
                else QuantizedKernels.DequantizeRows(w, first, count, (float*)p, FewCores);
            }
            using var tile = (converted ?? buffer).narrow(0, 0, count);
            if (converted is not null)
                using (var source = buffer.narrow(0, 0, count)) tile.copy_(source);
            use(first, tile);
        }
    }

    /// <summary>A quantized matrix passed through TorchSharp's autograd arguments (which take objects).</summary>
    internal sealed record MatrixHandle(QuantizedMatrix Matrix, bool RoundActivations);
}

/// <summary>
/// The autograd node of <see cref="QuantizedOps.Linear"/>: arguments x (..., in), the weight's handle, the bias (or
/// null). Nothing of x is saved: the input gradient needs only the weight, which stays in its blocks.
/// </summary>
sealed class QuantizedLinearFunction : autograd.SingleTensorFunction<QuantizedLinearFunction>
{
    public override string Name => nameof(QuantizedLinearFunction);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, handle, bias) = ((Tensor)vars[0], (QuantizedOps.MatrixHandle)vars[1], vars[2] as Tensor);
        ctx.save_data("matrix", handle);
        ctx.save_data("bias", bias is not null && bias.requires_grad);
        ctx.save_data("dtype", x.dtype);
        var y = QuantizedOps.Product(x, handle.Matrix, handle.RoundActivations);
        if (bias is not null) y.add_(bias);
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var handle = (QuantizedOps.MatrixHandle)ctx.get_data("matrix");
        bool biasGrad = (bool)ctx.get_data("bias");
        var dtype = (ScalarType)ctx.get_data("dtype");
        var dx = QuantizedOps.InputGradient(gradOutput, handle.Matrix);
        if (dx.dtype != dtype) dx = dx.to(dtype);
        Tensor? db = null;
        if (biasGrad)
        {
            using var flat = gradOutput.reshape(-1, handle.Matrix.Rows);
            db = flat.sum(0L);
        }
        return [dx, null!, db!];
    }
}
