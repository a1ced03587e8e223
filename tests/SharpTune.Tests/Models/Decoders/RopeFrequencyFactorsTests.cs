using SharpTune.Models.Decoders.Common;

namespace SharpTune.Tests.Models.Decoders;

/// <summary>llama.cpp's <c>rope_freqs.weight</c> factors back to the Hugging Face llama3 <c>rope_scaling</c> they came from.</summary>
public class RopeFrequencyFactorsTests
{
    /// <summary>The factors as llama.cpp's converter writes them: 1, factor, or 1 / blend, per frequency, in float32.</summary>
    public static float[] ConverterFactors(int headDim, double theta, double factor, double low, double high, double original)
    {
        var result = new float[headDim / 2];
        for (int i = 0; i < result.Length; i++)
        {
            float frequency = (float)(1 / Math.Pow(theta, 2.0 * i / headDim));
            double wavelength = 2 * Math.PI / frequency;
            if (wavelength < original / high) result[i] = 1;
            else if (wavelength > original / low) result[i] = (float)factor;
            else
            {
                double smooth = (original / wavelength - low) / (high - low);
                result[i] = (float)(1 / ((1 - smooth) / factor + smooth));
            }
        }
        return result;
    }

    [Theory]
    [InlineData(128, 500000.0, 8.0, 1.0, 4.0, 8192)]   // Llama 3.1 8B
    [InlineData(64, 500000.0, 32.0, 1.0, 4.0, 8192)]   // Llama 3.2 1B
    [InlineData(16, 10000.0, 4.0, 0.5, 32.0, 1024)]    // the oracle test's tiny model
    public void The_settings_come_back_and_give_the_factors_frequencies(int headDim, double theta, double factor, double low, double high, int original)
    {
        var factors = ConverterFactors(headDim, theta, factor, low, high, original);
        var (scaling, reason) = RopeScaling.FromFrequencyFactors(factors, headDim, theta, original);
        Assert.True(scaling is not null, reason);
        Assert.Equal(("llama3", factor, low, high, original),
            (scaling.Kind, scaling.Factor!.Value, scaling.LowFreqFactor!.Value, scaling.HighFreqFactor!.Value, scaling.OriginalMaxPositionEmbeddings!.Value));
        scaling.Validate("derived");
        var expected = RotaryEmbedding.InverseFrequencies(headDim, theta, null).Select((f, i) => f / factors[i]).ToArray();
        Tolerances.AssertClose(expected, RotaryEmbedding.InverseFrequencies(headDim, theta, scaling), 1e-6, "frequencies");

        // Another original context scales all three settings and gives the same frequencies.
        var (other, _) = RopeScaling.FromFrequencyFactors(factors, headDim, theta, original * 2);
        Assert.Equal(low * 2, other!.LowFreqFactor!.Value, 4);
        Tolerances.AssertClose(expected, RotaryEmbedding.InverseFrequencies(headDim, theta, other), 1e-6, "frequencies, doubled context");
    }

    [Fact]
    public void Factors_no_llama3_scaling_gives_are_refused_with_the_reason()
    {
        var ones = Enumerable.Repeat(1f, 64).ToArray();
        Assert.Contains("no scaling", RopeScaling.FromFrequencyFactors(ones, 128, 500000).Reason);
        Assert.Contains("64 factors for a head dimension of 130 (expected 65)", RopeScaling.FromFrequencyFactors(ones, 130, 500000).Reason);

        var bent = ConverterFactors(128, 500000, 8, 1, 4, 8192);
        int middle = Array.FindIndex(bent, f => f > 1.01f && f < 7.99f);
        bent[middle + 1] *= 1.01f;                                             // one blended factor off the line
        var (scaling, reason) = RopeScaling.FromFrequencyFactors(bent, 128, 500000);
        Assert.Null(scaling);
        Assert.Contains("no llama3 scaling reproduces them", reason);
    }
}
