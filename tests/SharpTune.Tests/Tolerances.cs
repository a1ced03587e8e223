namespace SharpTune.Tests;

/// <summary>
/// The tolerances numeric tests compare with, each chosen for what is compared, so that a result holds on any
/// x86-64 CPU and any of libtorch's kernel levels (ATEN_CPU_CAPABILITY, MKL's code path), not just the one
/// CPU a test was written on. Relative ones multiply the compared values' scale (their largest magnitude).
/// </summary>
static class Tolerances
{
    /// <summary>The same kernels on the same inputs in the same order: bit-identical.</summary>
    public const double Exact = 0;

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

    /// <summary>Training runs that differ only in kernels, compared loss by loss after a few optimizer steps.</summary>
    public const double TrainingLoss = 1e-4;

    /// <summary>The largest magnitude of the values, at least 1 so values near zero are compared absolutely.</summary>
    public static double Scale(IEnumerable<float> values) => Math.Max(1, values.Max(v => Math.Abs((double)v)));
}
