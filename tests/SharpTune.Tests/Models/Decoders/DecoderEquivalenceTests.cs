using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders;

/// <summary>The modules against independent float64 re-implementations, rotary frequencies against the formula, GQA against multi-head.</summary>
public class DecoderEquivalenceTests
{
    /// <summary>Llama 3.1's frequency scaling, written from the formula (Meta's <c>apply_scaling</c>) in the where-form transformers uses.</summary>
    static double[] Llama3Frequencies(int headDim, double theta, double factor, double low, double high, double original)
    {
        var result = new double[headDim / 2];
        for (int i = 0; i < result.Length; i++)
        {
            double f = Math.Pow(theta, -(2.0 * i) / headDim), wavelength = 2 * Math.PI / f;
            double scaled = wavelength > original / low ? f / factor : f;
            double smooth = (original / wavelength - low) / (high - low);
            bool medium = !(wavelength < original / high) && !(wavelength > original / low);
            result[i] = medium ? (1 - smooth) * scaled / factor + smooth * scaled : scaled;
        }
        return result;
    }

    [Fact]
    public void Llama3_rope_scaling_frequencies_follow_the_formula()
    {
        var scaling = new RopeScaling { RopeType = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 64 };
        var expected = Llama3Frequencies(10, 10000, 8, 1, 4, 64);
        var actual = RotaryEmbedding.InverseFrequencies(10, 10000, scaling);
        Tolerances.AssertClose(expected, actual, Tolerances.Float64, "llama3 frequencies");
        // The tiny config spans all three bands: kept (wavelength 6.3 < 16), blended (39.7), divided by 8 (251 and beyond).
        Assert.Equal(1.0, actual[0]);
        Assert.NotEqual(Math.Pow(10000, -0.2), actual[1]);
        Assert.NotEqual(Math.Pow(10000, -0.2) / 8, actual[1]);
        Assert.Equal(Math.Pow(10000, -0.4) / 8, actual[2], 15);

        // Llama 3.1 8B's own numbers: head_dim 128, theta 500000, factor 8, 1, 4, 8192.
        var real = new RopeScaling { RopeType = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 8192 };
        Tolerances.AssertClose(Llama3Frequencies(128, 500000, 8, 1, 4, 8192), RotaryEmbedding.InverseFrequencies(128, 500000, real), Tolerances.Float64, "Llama 3.1 8B");
    }

    [Fact]
    public void Rotary_rotates_dimension_i_with_i_plus_half_the_head()
    {
        var rotary = new RotaryEmbedding(8, 10000, null);
        using var positions = tensor(new long[] { 0, 3 }).view(1, 2);
        var (cos, sin) = rotary.CosSin(positions, ScalarType.Float32);                  // (1, 2, 8)
        using var x = zeros(1, 1, 2, 8);
        x[.., .., .., 1] = 1;                                                          // (B, N, T, D): dimension 1 only
        using var rotated = RotaryEmbedding.Apply(x, cos, sin);
        double angle = 3 * Math.Pow(10000, -2.0 / 8);
        Tolerances.AssertClose(new double[] { 0, 1, 0, 0, 0, 0, 0, 0 }, rotated[0, 0, 0].to(ScalarType.Float64).data<double>().ToArray(), Tolerances.Rounding, "position 0");
        Tolerances.AssertClose(new double[] { 0, Math.Cos(angle), 0, 0, 0, Math.Sin(angle), 0, 0 },
            rotated[0, 0, 1].to(ScalarType.Float64).data<double>().ToArray(), Tolerances.Rounding, "position 3");
        cos.Dispose();
        sin.Dispose();
    }

    /// <summary>The families with a reference here; Gemma's is in <c>Gemma/GemmaForCausalLMTests</c>.</summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("gpt2")]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Logits_equal_an_independent_float64_implementation(string family)
    {
        using var model = TinyDecoders.Create(family);
        var sd = model.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        long[] ids = [5, 91, 0, 33, 33, 17, 64, 2, 80];
        var info = model.Info;
        using var expected = family == "gpt2"
            ? ReferenceDecoders.Gpt2(sd, ids, info.Layers, info.Heads, 1e-5)
            : ReferenceDecoders.Llama(sd, ids, info.Layers, info.Heads, info.KeyValueHeads, info.HeadDim, family == "llama" ? 1e-5 : 1e-6,
                family == "llama" ? Llama3Frequencies(10, 10000, 8, 1, 4, 64) : Enumerable.Range(0, 4).Select(i => Math.Pow(1e6, -2.0 * i / 8)).ToArray(),
                info.TiedEmbeddings);
        using var actual = model.Forward(tensor(ids).view(1, -1));
        // fp32 kernels against float64 arithmetic through the network.
        Tolerances.AssertClose(expected, actual[0], Tolerances.DifferentKernelsThroughNetwork, $"{family} against the float64 reference");
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Grouped_query_attention_equals_multi_head_attention_with_each_key_value_head_repeated()
    {
        using var gqa = TinyDecoders.Create("llama");                                   // 6 query heads over 2 key/value heads
        var config = TinyDecoders.Config("llama");
        config["num_key_value_heads"] = 6;
        var tensors = gqa.Module.state_dict().Select(kv =>
        {
            if (!kv.Key.EndsWith("k_proj.weight", StringComparison.Ordinal) && !kv.Key.EndsWith("v_proj.weight", StringComparison.Ordinal))
                return (kv.Key, kv.Value);
            // key/value head j serves query heads 3j, 3j + 1, 3j + 2: repeat each head's 10 rows three times in place
            return (kv.Key, kv.Value.view(2, 1, 10, 48).expand(2, 3, 10, 48).reshape(60, 48));
        }).ToList();
        using var mha = PretrainedDecoder.FromStateDict(config, tensors);
        Assert.Equal(6, mha.Info.KeyValueHeads);
        using var ids = TinyDecoders.Ids(2, 8);
        using var expected = mha.Forward(ids);
        using var actual = gqa.Forward(ids);
        // The same sums, but key/value projections of other widths: other kernel blockings, through the network.
        Tolerances.AssertClose(expected, actual, Tolerances.DifferentKernelsThroughNetwork, "GQA against MHA");
    }
}
