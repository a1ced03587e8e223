using System.Runtime.CompilerServices;
using System.Numerics.Tensors;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// The element-wise parts of one decode step on fp32 rows, written as the modules compute them (<see cref="RmsNorm"/>,
/// <see cref="RotaryEmbedding"/>, <see cref="GatedMlp"/>'s activations, scaled dot-product attention) so a
/// <see cref="StepDecoder"/> gives the logits of the module's forward without a libtorch call per operation. The loops
/// run on <see cref="TensorPrimitives"/>, which picks the CPU's widest vectors (and plain code without them).
/// </summary>
public static class StepMath
{
    /// <summary>
    /// y = x / sqrt(mean(x²) + eps) · weight, as <see cref="RmsNorm"/> in float32; a norm whose weights are offsets from one
    /// passes 1 + w as <paramref name="weight"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        float meanSquare = TensorPrimitives.SumOfSquares(x) / x.Length;
        float scale = 1f / MathF.Sqrt(meanSquare + eps);
        TensorPrimitives.Multiply(x, scale, y);
        TensorPrimitives.Multiply(y, weight, y);
    }

    /// <summary>
    /// Rotates each head of <paramref name="heads"/> (N·D values) to position <paramref name="position"/> in Hugging Face's
    /// rotate-half form: dimension i pairs with i + D/2 at angle position·θᵢ.
    /// </summary>
    /// <param name="cos">cos(position·θᵢ), D/2 values, as <see cref="RotaryAngles"/> gives them.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rotate(Span<float> heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = headDim / 2;
        for (int start = 0; start < heads.Length; start += headDim)
        {
            var head = heads.Slice(start, headDim);
            for (int i = 0; i < half; i++)
            {
                float a = head[i], b = head[i + half];
                head[i] = a * cos[i] - b * sin[i];
                head[i + half] = b * cos[i] + a * sin[i];
            }
        }
    }

    /// <summary>cos and sin of position·θᵢ, the angle computed in float32 as <see cref="RotaryEmbedding.CosSin"/> does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RotaryAngles(int position, ReadOnlySpan<float> inverseFrequencies, Span<float> cos, Span<float> sin)
    {
        float p = position;
        for (int i = 0; i < inverseFrequencies.Length; i++)
        {
            float angle = p * inverseFrequencies[i];
            cos[i] = MathF.Cos(angle);
            sin[i] = MathF.Sin(angle);
        }
    }

    /// <summary>
    /// One query head over <paramref name="length"/> cached positions: softmax(q·Kᵀ·scale)·V into <paramref name="output"/>.
    /// Keys and values are (length, D) rows at a stride of D.
    /// </summary>
    /// <param name="scores">Scratch of at least <paramref name="length"/> values.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Attend(ReadOnlySpan<float> query, float* keys, float* values, int length, float scale, Span<float> scores, Span<float> output)
    {
        int dim = query.Length;
        var weights = scores[..length];
        for (int t = 0; t < length; t++)
            weights[t] = TensorPrimitives.Dot(query, new ReadOnlySpan<float>(keys + (long)t * dim, dim)) * scale;
        // softmax from the largest score down (TensorPrimitives.SoftMax exponentiates the raw scores, which overflow)
        TensorPrimitives.Subtract(weights, TensorPrimitives.Max(weights), weights);
        TensorPrimitives.Exp(weights, weights);
        TensorPrimitives.Divide(weights, TensorPrimitives.Sum(weights), weights);
        output.Clear();
        for (int t = 0; t < length; t++)
        {
            var row = new ReadOnlySpan<float>(values + (long)t * dim, dim);
            TensorPrimitives.MultiplyAdd(row, weights[t], output, output);
        }
    }

    /// <summary>The gated MLP's activations by Hugging Face's names (as <see cref="GatedMlp.Activations"/>), in place.</summary>
    public static Action<Span<float>>? Activation(string name) => name switch
    {
        "silu" or "swish" => x => TensorPrimitives.Multiply(x, Sigmoid(x), x),
        "gelu" => GeluErf,
        "gelu_pytorch_tanh" or "gelu_new" => GeluTanh,
        _ => null,
    };

    [ThreadStatic] static float[]? activationScratch;

    static ReadOnlySpan<float> Sigmoid(ReadOnlySpan<float> x)
    {
        if (activationScratch is null || activationScratch.Length < x.Length) activationScratch = new float[x.Length];
        var s = activationScratch.AsSpan(0, x.Length);
        TensorPrimitives.Sigmoid(x, s);
        return s;
    }

    /// <summary>x·Φ(x) with the exact normal distribution function, as torch's gelu.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void GeluErf(Span<float> x)
    {
        for (int i = 0; i < x.Length; i++) x[i] = (float)(0.5 * x[i] * (1 + Erf(x[i] / Math.Sqrt(2))));
    }

    /// <summary>torch's gelu(approximate='tanh'): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void GeluTanh(Span<float> x)
    {
        const float k = 0.7978845608028654f;
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            x[i] = 0.5f * v * (1f + MathF.Tanh(k * (v + 0.044715f * v * v * v)));
        }
    }

    /// <summary>erf in double precision (W. J. Cody's rational approximations, |error| below 1e-15 relative), enough for a float result.</summary>
    internal static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (ax < 0.5)
        {
            double t = x * x;
            double top = (((0.185777706184603153 * t + 3.16112374387056560) * t + 113.864154151050156) * t + 377.485237685302021) * t + 3209.37758913846947;
            double bottom = (((t + 23.6012909523441209) * t + 244.024637934444173) * t + 1282.61652607737228) * t + 2844.23683343917062;
            return x * top / bottom;
        }
        return Math.CopySign(1 - Erfc(ax), x);
    }

    static double Erfc(double ax)
    {
        if (ax < 4)
        {
            double top = (((((((2.15311535474403846e-8 * ax + 0.564188496988670089) * ax + 8.88314979438837594) * ax + 66.1191906371416295) * ax
                + 298.635138197400131) * ax + 881.952221241769090) * ax + 1712.04761263407058) * ax + 2051.07837782607147) * ax + 1230.33935479799725;
            double bottom = (((((((ax + 15.7449261107098347) * ax + 117.693950891312499) * ax + 537.181101862009858) * ax + 1621.38957456669019) * ax
                + 3290.79923573345963) * ax + 4362.61909014324716) * ax + 3439.36767414372164) * ax + 1230.33935480374942;
            return Math.Exp(-ax * ax) * top / bottom;
        }
        double z = 1 / (ax * ax);
        double p = ((((0.0163153871373020978 * z + 0.305326634961232344) * z + 0.360344899949804439) * z + 0.125781726111229246) * z + 0.0160837851487422766) * z
            + 6.58749161529837803e-4;
        double q = ((((z + 2.56852019228982242) * z + 1.87295284992346725) * z + 0.527905102951428412) * z + 0.0605183413124413191) * z + 0.00233520497626869185;
        const double invSqrtPi = 0.56418958354775628695;
        return Math.Exp(-ax * ax) / ax * (invSqrtPi - z * p / q);
    }
}
