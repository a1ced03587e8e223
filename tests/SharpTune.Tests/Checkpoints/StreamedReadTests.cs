using SharpTune.Checkpoints;
using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Checkpoints;

/// <summary>
/// Tensors streamed from a file straight into a destination of any float dtype (chunk by chunk, converted in managed code)
/// equal reading them whole and converting with torch: the same bits, NaN, infinities, subnormals and ties included.
/// </summary>
public class StreamedReadTests
{
    /// <summary>Values that probe rounding: ties to even in bf16 and f16, subnormals, infinities, NaN, and many random ones.</summary>
    static Tensor Probe(long rows, long columns)
    {
        manual_seed(11);
        var t = randn(rows, columns) * 3;
        var flat = t.view(-1);
        float[] specials = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f, -0f, 1e-40f, -3e-39f, 65520f, 1e-8f,
            BitConverter.Int32BitsToSingle(0x3F808000), BitConverter.Int32BitsToSingle(0x3F818000), 1.00048828125f, 70000f];
        for (int i = 0; i < specials.Length; i++) flat[i] = specials[i];
        return t;
    }

    static ScalarType[] Dtypes => [ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16];

    /// <summary>Bit for bit, except that any NaN equals any NaN (torch's vectorized bf16 conversion keeps more of a NaN's bits than its scalar one).</summary>
    static void AssertSameBits(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        using var nan = expected.isnan();
        using var actualNan = actual.isnan();
        using var sameNan = nan.eq(actualNan).all();
        Assert.True(sameNan.item<bool>(), $"{what}: NaN elsewhere");
        using var a = where(nan, zeros_like(expected), expected).contiguous();
        using var b = where(nan, zeros_like(actual), actual).contiguous();
        var x = a.bytes.ToArray();
        var y = b.bytes.ToArray();
        int size = (int)a.element_size();
        var diffs = Enumerable.Range(0, x.Length / size).Where(i => !x.AsSpan(i * size, size).SequenceEqual(y.AsSpan(i * size, size))).Take(5)
            .Select(i => $"element {i}: {Convert.ToHexString(x, i * size, size)} vs {Convert.ToHexString(y, i * size, size)}").ToList();
        Assert.True(diffs.Count == 0, $"{what}: the streamed tensor differs from torch's conversion: {string.Join("; ", diffs)}");
    }

    [Theory]
    [InlineData(GgufTensorType.F32)]
    [InlineData(GgufTensorType.F16)]
    [InlineData(GgufTensorType.BF16)]
    [InlineData(GgufTensorType.Q8_0)]
    public void A_gguf_tensor_streams_into_every_float_dtype_as_torch_converts_it(GgufTensorType type)
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("t.gguf");
        using var probe = Probe(1200, 2048);                                   // 2.4M values: several chunks of every kind
        new GgufWriter().Set("general.architecture", "test").AddTensor("t", probe, type).Save(path);
        var file = GgufFile.Open(path);
        using var whole = file.ReadTensor("t");                                 // float32, as stored (dequantized)
        foreach (var dtype in Dtypes)
        {
            using var expected = whole.to(dtype);
            using var streamed = empty(whole.shape, dtype);
            file.ReadInto("t", streamed);
            AssertSameBits(expected, streamed, $"{type} into {dtype}");
        }
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void A_safetensors_tensor_streams_into_every_float_dtype_as_torch_converts_it(ScalarType stored)
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("t.safetensors");
        using var probe = Probe(1500, 2000);
        using var saved = probe.to(stored);
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["t"] = saved });
        var lazy = Assert.Single(SafeTensors.Open(path));
        Assert.Equal(probe.shape, lazy.Shape);
        Assert.True(lazy.IsFloatingPoint);
        foreach (var dtype in Dtypes)
        {
            using var expected = saved.to(dtype);
            using var streamed = empty(probe.shape, dtype);
            lazy.ReadInto(streamed);
            AssertSameBits(expected, streamed, $"{stored} into {dtype}");
        }
        var error = Assert.Throws<ArgumentException>(() => lazy.ReadInto(empty(3, 3)));
        Assert.Contains("'t' has shape [1500, 2000]", error.Message);
    }
}
