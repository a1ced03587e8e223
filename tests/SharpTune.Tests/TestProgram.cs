using SharpTune.Quantization;
using SharpTune.Tests.Quantization;

namespace SharpTune.Tests;

/// <summary>
/// The test assembly's entry point (the test host never calls it). `dotnet SharpTune.Tests.dll kernel-paths` checks the
/// quantized kernels (against exact products, and each row of a many-row product against the row alone) and the
/// activation rounding on the path this process runs, so a test can start it with DOTNET_EnableAVX512=0 or
/// DOTNET_EnableAVX2=0 and prove the lower paths on any CPU.
/// </summary>
public static class TestProgram
{
    public static int Main(string[] args)
    {
        if (args is not ["kernel-paths"]) return 0;
        Console.WriteLine($"path {QuantizedKernels.Path}");
        var failures = KernelCases.CheckAllTypes(QuantizedKernels.Path, seed: 41);
        failures.AddRange(KernelCases.CheckActivationValues(seed: 43));
        failures.AddRange(KernelCases.CheckRowsAlone(QuantizedKernels.Path, seed: 47));
        foreach (string failure in failures.Take(20)) Console.WriteLine(failure);
        Console.WriteLine(failures.Count == 0 ? "ok" : $"{failures.Count} failures");
        return failures.Count == 0 ? 0 : 1;
    }
}
