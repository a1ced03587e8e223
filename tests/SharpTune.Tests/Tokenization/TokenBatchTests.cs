using SharpTune.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Tokenization;

public class TokenBatchTests
{
    const int Pad = 7;

    static EncodedText Item(int length, int pairStart = int.MaxValue) => new(
        Enumerable.Range(100, length).ToArray(),
        Enumerable.Range(0, length).Select(t => t >= pairStart ? 1 : 0).ToArray(),
        Truncated: false);

    [Fact]
    public void Pads_to_the_longest_in_the_batch()
    {
        using var batch = TokenBatch.Collate([Item(3), Item(5, pairStart: 3), Item(4)], Pad);
        Assert.Equal((3, 5), (batch.BatchSize, batch.SequenceLength));
        foreach (var tensor in new[] { batch.InputIds, batch.AttentionMask, batch.TokenTypeIds })
        {
            Assert.Equal([3L, 5L], tensor.shape);
            Assert.Equal(ScalarType.Int64, tensor.dtype);
        }
        Assert.Equal([100L, 101, 102, Pad, Pad, 100, 101, 102, 103, 104, 100, 101, 102, 103, Pad],
            batch.InputIds.data<long>().ToArray());
        Assert.Equal([1L, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], batch.AttentionMask.data<long>().ToArray());
        Assert.Equal([0L, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0], batch.TokenTypeIds.data<long>().ToArray());
    }

    [Theory]
    [InlineData(9, 8, 16)]
    [InlineData(8, 8, 8)]
    [InlineData(5, 1, 5)]
    public void Rounds_the_length_up_to_a_multiple(int longest, int multiple, int expected)
    {
        using var batch = TokenBatch.Collate([Item(longest), Item(2)], Pad, padToMultipleOf: multiple);
        Assert.Equal(expected, batch.SequenceLength);
        Assert.Equal([2L, expected], batch.InputIds.shape);
        Assert.Equal([longest, 2L], batch.AttentionMask.sum(1).data<long>().ToArray());
    }

    [Fact]
    public void Collates_real_encodings()
    {
        var tokenizer = SharpTune.Models.BuiltInModels.MiniLM.CreateTokenizer();
        var items = new EncodedText[] { tokenizer.Encode("Hello, my dog is cute"), tokenizer.Encode("hi", "there") };
        using var batch = TokenBatch.Collate(items, tokenizer.PadId);
        Assert.Equal([2L, 8L], batch.InputIds.shape);
        Assert.Equal([101L, 7632, 102, 2045, 102, 0, 0, 0], batch.InputIds[1].data<long>().ToArray());
        Assert.Equal([0L, 0, 0, 1, 1, 0, 0, 0], batch.TokenTypeIds[1].data<long>().ToArray());
    }

    [Fact]
    public void Dispose_frees_the_tensors_even_inside_a_dispose_scope()
    {
        TokenBatch batch;
        using (var scope = torch.NewDisposeScope())
        {
            batch = TokenBatch.Collate([Item(3)], Pad);
            batch.Dispose();
            Assert.True(batch.InputIds.IsInvalid);
            Assert.True(batch.AttentionMask.IsInvalid);
            Assert.True(batch.TokenTypeIds.IsInvalid);
        } // the scope must not trip over tensors already disposed
    }

    [Fact]
    public void Rejects_bad_input()
    {
        Assert.Throws<ArgumentException>(() => TokenBatch.Collate([], Pad));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenBatch.Collate([Item(3)], Pad, padToMultipleOf: 0));
        var mismatched = new EncodedText([1, 2, 3], [0, 0], false);
        var e = Assert.Throws<ArgumentException>(() => TokenBatch.Collate([Item(3), mismatched], Pad));
        Assert.Contains("items[1]", e.Message);
    }
}
