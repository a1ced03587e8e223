using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tokenization;

/// <summary>
/// Encodings padded into model inputs, named after the arguments of HF's BertModel.forward. Padding is
/// dynamic: to the longest sequence in this batch, not to the maximum length, which saves most of the
/// compute on short texts. Disposing the batch disposes its tensors.
/// </summary>
public sealed class TokenBatch : IDisposable
{
    /// <summary>Token ids, padded with the PAD id. (B, T) int64</summary>
    public Tensor InputIds { get; }

    /// <summary>1 on real tokens, 0 on padding. (B, T) int64</summary>
    public Tensor AttentionMask { get; }

    /// <summary>Segment ids, padded with 0 as transformers does. (B, T) int64</summary>
    public Tensor TokenTypeIds { get; }

    public int BatchSize { get; }

    /// <summary>T: the padded length, which per-token labels must be padded to as well.</summary>
    public int SequenceLength { get; }

    TokenBatch(Tensor inputIds, Tensor attentionMask, Tensor tokenTypeIds, int batchSize, int sequenceLength)
    {
        InputIds = inputIds;
        AttentionMask = attentionMask;
        TokenTypeIds = tokenTypeIds;
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
    }

    /// <summary>
    /// Pads <paramref name="items"/> on the right to the longest of them, rounded up to a multiple of
    /// <paramref name="padToMultipleOf"/> (8 lets fp16 kernels use tensor cores; 1 turns rounding off).
    /// The tensors belong to the current dispose scope, if any, as well as to the batch.
    /// </summary>
    public static TokenBatch Collate(IReadOnlyList<EncodedText> items, int padTokenId, int padToMultipleOf = 1, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(items);
        if (items.Count == 0) throw new ArgumentException("cannot collate an empty batch", nameof(items));
        ArgumentOutOfRangeException.ThrowIfLessThan(padToMultipleOf, 1);
        for (int b = 0; b < items.Count; b++)
        {
            var item = items[b] ?? throw new ArgumentException($"items[{b}] is null", nameof(items));
            if (item.TokenTypeIds.Length != item.InputIds.Length)
                throw new ArgumentException(
                    $"items[{b}] has {item.InputIds.Length} input ids but {item.TokenTypeIds.Length} token type ids", nameof(items));
        }

        int longest = items.Max(e => e.Length);
        int length = (longest + padToMultipleOf - 1) / padToMultipleOf * padToMultipleOf;
        int batch = items.Count;
        var ids = new long[batch * length];
        var mask = new long[batch * length];
        var types = new long[batch * length];
        Array.Fill(ids, padTokenId);
        for (int b = 0; b < batch; b++)
        {
            var item = items[b];
            int row = b * length;
            for (int t = 0; t < item.Length; t++)
            {
                ids[row + t] = item.InputIds[t];
                mask[row + t] = 1;
                types[row + t] = item.TokenTypeIds[t];
            }
        }
        long[] shape = [batch, length];
        return new TokenBatch(
            torch.tensor(ids, shape, ScalarType.Int64, device),     // (B, T)
            torch.tensor(mask, shape, ScalarType.Int64, device),    // (B, T)
            torch.tensor(types, shape, ScalarType.Int64, device),   // (B, T)
            batch, length);
    }

    public void Dispose()
    {
        InputIds.Dispose();
        AttentionMask.Dispose();
        TokenTypeIds.Dispose();
    }
}
