using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Models.Quantized;

/// <summary>
/// A frozen token embedding whose matrix (V, H) stays in its file's blocks: a lookup dequantizes only the rows asked
/// for, so a 152k-token vocabulary costs no dense copy. No keys; nothing trains it.
/// </summary>
public sealed class StoredEmbedding : nn.Module<Tensor, Tensor>
{
    readonly QuantizedMatrix stored;

    public StoredEmbedding(QuantizedMatrix stored) : base(nameof(StoredEmbedding)) => this.stored = stored;

    /// <summary>The matrix's blocks, (V, H).</summary>
    public QuantizedMatrix Weight => stored;

    /// <summary>
    /// The rows' dtype: float32, or bfloat16 (each row rounded as torch rounds fp32 to bf16) where the model computes in
    /// bf16 over its stored base (training over a stored base with --precision bf16: <see cref="QuantizedOps.ComputeInBf16"/>), as a bf16 embedding would give them.
    /// </summary>
    public ScalarType OutputDtype
    {
        get => outputDtype;
        set => outputDtype = value is ScalarType.Float32 or ScalarType.BFloat16 ? value
            : throw new ArgumentException($"a stored embedding gives float32 or bfloat16 rows, not {value}", nameof(value));
    }

    ScalarType outputDtype = ScalarType.Float32;

    /// <param name="ids">(...) token ids</param>
    /// <returns>(..., H) rows in <see cref="OutputDtype"/></returns>
    public override unsafe Tensor forward(Tensor ids)
    {
        using var flat = ids.reshape(-1).to(ScalarType.Int64).contiguous();
        var tokens = flat.data<long>().ToArray();
        bool bf16 = outputDtype == ScalarType.BFloat16;
        var rows = empty(tokens.Length, stored.Columns, outputDtype);
        fixed (byte* p = rows.bytes)
        {
            for (int i = 0; i < tokens.Length; i++)
            {
                long id = tokens[i];
                if (id < 0 || id >= stored.Rows)
                    throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id {id} is outside the embedding's {stored.Rows} rows");
                if (bf16) QuantizedKernels.DequantizeRows(stored, (int)id, 1, (ushort*)p + (long)i * stored.Columns);
                else QuantizedKernels.DequantizeRows(stored, (int)id, 1, (float*)p + (long)i * stored.Columns);
            }
        }
        using (rows) return rows.reshape([.. ids.shape, stored.Columns]);
    }
}

/// <summary>A decoder's token embedding and output head kept in their file's blocks (null: dense parameters).</summary>
/// <param name="Tokens">The token embedding (V, H); a tied head computes over it too.</param>
/// <param name="Head">The untied output head (V, H).</param>
public sealed record StoredEmbeddings(QuantizedMatrix? Tokens, QuantizedMatrix? Head);
