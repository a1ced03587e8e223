using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Models.Quantized;

/// <summary>
/// Products with a weight kept in its file's blocks (<see cref="QuantizedMatrix"/>, (out, in)), never expanded whole.
/// Few rows (generation, a decode step over a batch of prompts) go through the block kernels, which read each block
/// once per product; many rows (prompt processing, training) dequantize a tile of output rows at a time into a scratch
/// in the activations' dtype and use libtorch's GEMM, so the tile's dequantization is paid once for all rows.
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
    /// Bytes of one dequantized fp32 tile: large enough that most of a model's matrices are one tile (a product is then
    /// one GEMM written straight into the result), small beside the weights. The scratch is kept per thread and reused,
    /// so a forward pass does not fault in fresh pages for every product.
    /// </summary>
    public const long TileBytes = 32L << 20;

    [ThreadStatic] static Tensor? scratch;

    /// <summary>
    /// <c>x Wᵀ + b</c>: (..., in) to (..., out) in x's dtype; differentiable in x (and the bias, when it trains). Under
    /// <paramref name="roundActivations"/> (inference, scoring: modules in eval mode) x is first rounded as ggml rounds
    /// activations for the weight's type (<see cref="ActivationRounding"/>), on both paths, so results agree with llama.cpp's
    /// and with each other; in training the product is the exact one over the dequantized weight, as QLoRA computes. The
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
    /// y = x Wᵀ without autograd. (..., in) -> (..., out). With <paramref name="roundActivations"/> the rows are rounded as
    /// ggml rounds them (the block kernels always compute on such rounded rows; the tile path rounds them first).
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
            if (roundActivations) rows = ActivationRounding.Apply(rows, w.Type).to(x.dtype);
            ForEachTile(w, x.dtype, (first, tile) =>
            {
                if (tile.shape[0] == w.Rows) flat.addmm_(rows, tile.t(), beta: 0);   // one tile: the GEMM writes the result itself
                else flat.narrow(1, first, tile.shape[0]).copy_(rows.matmul(tile.t()));
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
        var rows = gradOutput.reshape(n, w.Rows);
        var dx = zeros(n, w.Columns, gradOutput.dtype);
        ForEachTile(w, gradOutput.dtype, (first, tile) => dx.addmm_(rows.narrow(1, first, tile.shape[0]), tile));
        return dx.reshape(inShape).MoveToOuterDisposeScope();
    }

    /// <summary>Dequantizes the weight a tile of output rows at a time into one reused scratch and hands each tile (rows, in) on.</summary>
    static unsafe void ForEachTile(QuantizedMatrix w, ScalarType dtype, Action<long, Tensor> use)
    {
        int tileRows = (int)Math.Clamp(TileBytes / (4L * w.Columns), 16, w.Rows);
        long needed = (long)tileRows * w.Columns;
        if (scratch is null || scratch.numel() < needed)
        {
            scratch?.Dispose();
            scratch = empty(Math.Max(needed, TileBytes / 4), ScalarType.Float32).DetachFromDisposeScope();
        }
        using var buffer = scratch.narrow(0, 0, needed).view(tileRows, w.Columns);
        using var converted = dtype == ScalarType.Float32 ? null : empty(tileRows, w.Columns, dtype);
        for (int first = 0; first < w.Rows; first += tileRows)
        {
            int count = Math.Min(tileRows, w.Rows - first);
            fixed (byte* p = buffer.bytes) QuantizedKernels.DequantizeRows(w, first, count, (float*)p);
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
