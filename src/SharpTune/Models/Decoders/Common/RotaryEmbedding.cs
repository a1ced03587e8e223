using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// Rotary position embedding in Hugging Face's rotate-half form (HF <c>LlamaRotaryEmbedding</c> and
/// <c>apply_rotary_pos_emb</c>): dimension i of a head pairs with i + D/2. Holds no parameters (HF's
/// <c>inv_freq</c> buffer is not persistent), so it is no module: the frequencies live as plain numbers and are
/// made a tensor per forward on the positions' device.
/// </summary>
public sealed class RotaryEmbedding
{
    readonly float[] inverseFrequencies;

    public RotaryEmbedding(int headDim, double theta, RopeScaling? scaling)
    {
        inverseFrequencies = InverseFrequencies(headDim, theta, scaling).Select(f => (float)f).ToArray();
    }

    /// <summary>The frequencies as float32, D/2 values (what <see cref="CosSin"/> multiplies positions by).</summary>
    internal ReadOnlySpan<float> Frequencies => inverseFrequencies;

    /// <summary>θ^(-2i/D) for i &lt; D/2, rescaled by <paramref name="scaling"/>'s kind (<see cref="RopeScalingKinds"/>).</summary>
    public static double[] InverseFrequencies(int headDim, double theta, RopeScaling? scaling)
    {
        var frequencies = Enumerable.Range(0, headDim / 2).Select(i => 1.0 / Math.Pow(theta, 2.0 * i / headDim)).ToArray();
        return scaling is null ? frequencies : RopeScalingKinds.Get(scaling.Kind).Scale(frequencies, scaling);
    }

    /// <summary>Cosines and sines for <paramref name="positionIds"/> (B, T), each (B, T, D), computed in float32, returned in <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) CosSin(Tensor positionIds, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var inverse = tensor(inverseFrequencies, device: positionIds.device);                          // (D/2)
        var angles = positionIds.to(ScalarType.Float32).unsqueeze(-1) * inverse;                     // (B, T, D/2)
        var embedding = cat([angles, angles], -1);                                                   // (B, T, D)
        return (embedding.cos().to(dtype).MoveToOuterDisposeScope(), embedding.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>Rotates <paramref name="x"/> (B, N, T, D) by the angles of <paramref name="cos"/>, <paramref name="sin"/> (B, T, D).</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        long half = x.shape[^1] / 2;
        var rotated = cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1); // rotate_half: (-x2, x1)
        return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
    }
}
