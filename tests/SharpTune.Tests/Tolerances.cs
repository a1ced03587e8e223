using System.Globalization;
using static TorchSharp.torch;

namespace SharpTune.Tests;

/// <summary>
/// The tolerances numeric tests compare with, each chosen for what is compared, so that a result holds on any
/// x86-64 CPU and any of libtorch's kernel levels (ATEN_CPU_CAPABILITY, MKL's code path), not just the one
/// CPU a test was written on. Relative ones multiply the compared values' scale (<see cref="Scale"/>).
/// </summary>
/// <remarks>
/// Pick by what the two sides compute, not by what passes: the same kernels on the same inputs in the same
/// order are <see cref="Exact"/>. Anything else (autograd on against off, one row against a padded batch, a
/// Linear module against matmul + add, merged weights against base + update) runs other kernels or another
/// order of the same sums, and libtorch picks kernels by CPU (AVX-512, AVX2, SSE) and by shape, so such a
/// comparison is only as tight as fp32 rounding allows. Tests comparing two code paths carry
/// <c>[Trait("Category", "NumericParity")]</c>; CI runs them again under <c>ATEN_CPU_CAPABILITY=avx2</c>.
/// </remarks>
static class Tolerances
{
    /// <summary>The xUnit trait that marks tests comparing two kernels or code paths (<c>--filter Category=NumericParity</c>).</summary>
    public const string Category = "Category";

    /// <summary>The trait value of <see cref="Category"/>.</summary>
    public const string NumericParity = "NumericParity";

    /// <summary>The same kernels on the same inputs in the same order: bit-identical.</summary>
    public const double Exact = 0;

    /// <summary>
    /// The same value through a few elementwise fp32 operations in another but equivalent order (W + d - d,
    /// (x * s) / x): each rounds by half an ulp (6e-8 relative), a handful of them stay under 1e-6.
    /// Relative to the values' scale.
    /// </summary>
    public const double Rounding = 1e-6;

    /// <summary>
    /// The same arithmetic through different fp32 kernels (vectorised or not, MKL or not, autograd on or off,
    /// another blocking of a product): sums come out in another order, each off by a few ulps of the running
    /// total. Relative to the values' scale.
    /// </summary>
    public const double DifferentKernels = 1e-5;

    /// <summary>
    /// Different kernels through a whole network (several layers, softmax, LayerNorm, recurrent cells): the
    /// per-kernel rounding above, compounded by depth. Relative to the values' scale.
    /// </summary>
    public const double DifferentKernelsThroughNetwork = 1e-4;

    /// <summary>
    /// bf16 products against fp32 or another bf16 kernel: bfloat16 keeps 8 significant bits, 2^-8 = 3.9e-3
    /// relative per rounding, a few of them through the network. Relative to the values' scale.
    /// </summary>
    public const double Bf16 = 1e-2;

    /// <summary>
    /// float64 arithmetic in another order or by another algorithm (a recursion against enumeration): 1.1e-16
    /// per rounding leaves many orders of magnitude below this. Relative to the values' scale.
    /// </summary>
    public const double Float64 = 1e-10;

    /// <summary>Training runs that differ only in kernels, compared loss by loss after a few optimizer steps.</summary>
    public const double TrainingLoss = 1e-4;

    /// <summary>
    /// How much two results that must differ (a mask, a prompt or an adapter takes part) differ at least:
    /// ten times the loosest kernel tolerance, so rounding can never pass for the feature's effect.
    /// Relative to the values' scale.
    /// </summary>
    public const double Distinct = 1e-3;

    /// <summary>The largest magnitude of the values, at least 1 so values near zero are compared absolutely.</summary>
    public static double Scale(IEnumerable<float> values) => Scale(values.Select(v => (double)v));

    /// <summary>The largest magnitude of the values, at least 1 so values near zero are compared absolutely.</summary>
    public static double Scale(IEnumerable<double> values) => values.Aggregate(1.0, (m, v) => double.IsFinite(v) ? Math.Max(m, Math.Abs(v)) : m);

    /// <summary>
    /// Asserts that <paramref name="actual"/> has <paramref name="expected"/>'s shape and that no element differs by
    /// more than <paramref name="relativeTolerance"/> times the scale of both (<see cref="Scale"/>); the message names
    /// the worst element. With <see cref="Exact"/> the two must be equal element for element.
    /// </summary>
    public static void AssertClose(Tensor expected, Tensor actual, double relativeTolerance, string? what = null)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{Prefix(what)}shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]");
        AssertClose(Values(expected), Values(actual), relativeTolerance, what, expected.shape);
    }

    /// <summary><see cref="AssertClose(Tensor, Tensor, double, string?)"/> for plain values.</summary>
    public static void AssertClose(double[] expected, double[] actual, double relativeTolerance, string? what = null) =>
        AssertClose(expected, actual, relativeTolerance, what, null);

    /// <summary><see cref="AssertClose(Tensor, Tensor, double, string?)"/> for plain values.</summary>
    public static void AssertClose(float[] expected, float[] actual, double relativeTolerance, string? what = null) =>
        AssertClose(expected.Select(v => (double)v).ToArray(), actual.Select(v => (double)v).ToArray(), relativeTolerance, what, null);

    /// <summary>
    /// Asserts that the two differ somewhere by more than <see cref="Distinct"/> times their scale: the feature that
    /// makes them differ takes part, by more than any rounding could.
    /// </summary>
    public static void AssertDistinct(Tensor a, Tensor b, string what)
    {
        var (x, y) = (Values(a), Values(b));
        Assert.Equal(x.Length, y.Length);
        var (_, difference) = Worst(x, y);
        double scale = Scale(x.Concat(y));
        Assert.True(difference > Distinct * scale,
            $"{what}: the two differ by at most {Format(difference)}, not more than {Format(Distinct)} x scale {Format(scale)}");
    }

    static void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double relativeTolerance, string? what, long[]? shape)
    {
        Assert.True(expected.Count == actual.Count, $"{Prefix(what)}{actual.Count} values, expected {expected.Count}");
        if (expected.Count == 0) return;
        var (index, difference) = Worst(expected, actual);
        double scale = Scale(expected.Concat(actual));
        double allowed = relativeTolerance * scale;
        if (difference <= allowed) return;
        string where = shape is null ? $"[{index}]" : $"[{string.Join(", ", Unravel(index, shape))}]";
        string bound = relativeTolerance == Exact
            ? "they must be identical (same kernels, same inputs, same order)"
            : $"allowed {Format(relativeTolerance)} x scale {Format(scale)} = {Format(allowed)}";
        Assert.Fail($"{Prefix(what)}element {where} differs by {Format(difference)} (expected {Format(expected[index])}, actual {Format(actual[index])}); {bound}");
    }

    /// <summary>The element whose difference is largest; a NaN on one side only is an infinite difference.</summary>
    static (int Index, double Difference) Worst(IReadOnlyList<double> expected, IReadOnlyList<double> actual)
    {
        int worst = 0;
        double largest = -1;
        for (int i = 0; i < expected.Count; i++)
        {
            double e = expected[i], a = actual[i];
            double difference = double.IsNaN(e) || double.IsNaN(a) ? (double.IsNaN(e) && double.IsNaN(a) ? 0 : double.PositiveInfinity)
                : e == a ? 0 : Math.Abs(e - a);
            if (double.IsNaN(difference)) difference = double.PositiveInfinity; // +inf against -inf
            if (difference > largest) (worst, largest) = (i, difference);
        }
        return (worst, largest);
    }

    static double[] Values(Tensor tensor)
    {
        using var scope = NewDisposeScope();
        return tensor.detach().cpu().to(ScalarType.Float64).flatten().data<double>().ToArray();
    }

    static IEnumerable<long> Unravel(long index, long[] shape)
    {
        var result = new long[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            result[d] = index % shape[d];
            index /= shape[d];
        }
        return result;
    }

    static string Prefix(string? what) => what is null ? "" : what + ": ";

    static string Format(double value) => value.ToString("G9", CultureInfo.InvariantCulture);
}
