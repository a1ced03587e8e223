using SharpTune.Models.Decoders.Gguf;
using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders.Gguf;

public class GgufPermutationTests
{
    [Fact]
    public void A_known_small_example_interleaves_the_halves_of_each_head()
    {
        // 2 heads of size 4: HF rows [h0: 0 1 2 3 | h1: 4 5 6 7]; llama.cpp pairs (i, i + d/2) become adjacent.
        var rows = arange(8, dtype: ScalarType.Float32);
        var gguf = GgufPermutation.ToLlamaCpp(rows, heads: 2);
        Assert.Equal([0f, 2, 1, 3, 4, 6, 5, 7], gguf.data<float>().ToArray());
        Assert.Equal(rows.data<float>().ToArray(), GgufPermutation.FromLlamaCpp(gguf, 2).data<float>().ToArray());
    }

    [Theory]
    [InlineData(4, 8, 5)]
    [InlineData(1, 6, 3)]
    [InlineData(3, 2, 7)]
    public void The_two_directions_are_inverse_for_weights_and_biases(int heads, int headDim, int inputs)
    {
        manual_seed(heads);
        var weight = randn(heads * headDim, inputs);
        var bias = randn(heads * headDim);
        var permuted = GgufPermutation.ToLlamaCpp(weight, heads);
        Assert.Equal(weight.shape, permuted.shape);
        Assert.True(GgufPermutation.FromLlamaCpp(permuted, heads).eq(weight).all().item<bool>());
        Assert.True(GgufPermutation.ToLlamaCpp(GgufPermutation.FromLlamaCpp(weight, heads), heads).eq(weight).all().item<bool>());
        // A bias moves as the rows of its weight do.
        var b = GgufPermutation.ToLlamaCpp(bias, heads);
        var rowOrder = GgufPermutation.ToLlamaCpp(arange(heads * headDim, dtype: ScalarType.Int64), heads);
        Assert.True(b.eq(bias.index_select(0, rowOrder)).all().item<bool>());
        Assert.True(permuted.eq(weight.index_select(0, rowOrder)).all().item<bool>());
        // gguf_row[h·d + 2i + j] = hf_row[h·d + j·d/2 + i]
        long[] order = rowOrder.data<long>().ToArray();
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < headDim / 2; i++)
                for (int j = 0; j < 2; j++)
                    Assert.Equal(h * headDim + j * headDim / 2 + i, order[h * headDim + 2 * i + j]);
    }

    [Fact]
    public void Rows_that_do_not_split_into_even_heads_are_refused()
    {
        Assert.Throws<ArgumentException>(() => GgufPermutation.ToLlamaCpp(zeros(10, 3), heads: 4));
        Assert.Throws<ArgumentException>(() => GgufPermutation.FromLlamaCpp(zeros(9), heads: 3));
        Assert.Throws<ArgumentException>(() => GgufPermutation.FromLlamaCpp(zeros(2, 2, 2), heads: 1));
    }
}
