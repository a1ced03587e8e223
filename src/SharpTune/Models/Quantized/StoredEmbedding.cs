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

    /// <param name="ids">(...) token ids</param>
    /// <returns>(..., H) float32 rows</returns>
    public override unsafe Tensor forward(Tensor ids)
    {
        using var flat = ids.reshape(-1).to(ScalarType.Int64).contiguous();
        var tokens = flat.data<long>().ToArray();
        var rows = empty(tokens.Length, stored.Columns, ScalarType.Float32);
        fixed (byte* p = rows.bytes)
        {
            float* output = (float*)p;
            for (int i = 0; i < tokens.Length; i++)
            {
                long id = tokens[i];
                if (id < 0 || id >= stored.Rows)
                    throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id {id} is outside the embedding's {stored.Rows} rows");
                QuantizedKernels.DequantizeRows(stored, (int)id, 1, output + (long)i * stored.Columns);
            }
        }
        using (rows) return rows.reshape([.. ids.shape, stored.Columns]);
    }
}

/// <summary>A decoder's token embedding and output head kept in their file's blocks (null: dense parameters).</summary>
/// <param name="Tokens">The token embedding (V, H); a tied head computes over it too.</param>
/// <param name="Head">The untied output head (V, H).</param>
public sealed record StoredEmbeddings(QuantizedMatrix? Tokens, QuantizedMatrix? Head);
