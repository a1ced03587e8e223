using System.Runtime.InteropServices;
using SharpTune.Native;
using static TorchSharp.torch;

namespace SharpTune.Tests.Native;

public class MklDispatchTests
{
    /// <summary>Whether this test process runs with the override set off (SHARPTUNE_MKL_OVERRIDE=0, to test MKL's own dispatch).</summary>
    static bool OffInThisProcess => MklDispatch.DisabledBy(Environment.GetEnvironmentVariable(MklDispatch.EnvironmentVariable));

    [Fact]
    public void The_override_is_active_after_start_up_and_the_symbol_resolves_to_it()
    {
        var status = MklDispatch.Ensure();
        Assert.Same(status, MklDispatch.Ensure());
        if (OffInThisProcess)
        {
            Assert.False(status.Active, status.Reason);
            Assert.StartsWith("off", status.Reason);
            Assert.False(MklDispatch.OverrideResolves());
            return;
        }
        Assert.True(status.Active, status.Reason);
        Assert.True(MklDispatch.OverrideResolves());
    }

    [Fact]
    public void Mkl_dispatches_by_features_on_this_cpu_whatever_its_vendor()
    {
        using var product = ones(3, 3).matmul(ones(3, 3));           // libtorch is loaded
        int? code = MklDispatch.CodePath();
        Assert.NotNull(code);
        // Every x86-64 CPU this project runs on has AVX2; with the vendor check answered "Intel", MKL's code path
        // follows the features (AVX2 or AVX-512) on Intel and AMD alike, up to the level MKL_ENABLE_INSTRUCTIONS
        // allows (SSE4_2 caps it at SSE4.2, code 3). MKL's generic path is 0. With the override off, MKL's
        // own vendor check decides: nothing to expect on a CPU that is not Intel's.
        if (OffInThisProcess && !CpuDescription.Current.IsIntel) return;
        string cap = Environment.GetEnvironmentVariable("MKL_ENABLE_INSTRUCTIONS")?.Trim().ToUpperInvariant() ?? "";
        int atLeast = cap is "" || cap.StartsWith("AVX2", StringComparison.Ordinal) || cap.StartsWith("AVX512", StringComparison.Ordinal)
            || cap.StartsWith("AVX10", StringComparison.Ordinal) ? 5 : 3;
        if (System.Runtime.Intrinsics.X86.Avx2.IsSupported)
            Assert.True(code >= atLeast, $"MKL code path {code} on {CpuDescription.Current} (MKL_ENABLE_INSTRUCTIONS '{cap}')");
    }

    [Theory]
    [InlineData("0", true)]
    [InlineData("off", true)]
    [InlineData(" False ", true)]
    [InlineData("no", true)]
    [InlineData("1", false)]
    [InlineData("", false)]
    [InlineData(null, false)]
    public void The_environment_variable_turns_it_off(string? value, bool off) => Assert.Equal(off, MklDispatch.DisabledBy(value));

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Products_agree_with_the_override_on_and_off_within_fp32_tolerance()
    {
        // The override-off run needs a process of its own: the override is installed before libtorch loads.
        string withOverride = RunProbe(disable: false);
        string without = RunProbe(disable: true);
        var on = Parse(withOverride);
        var off = Parse(without);
        Assert.Contains("active", on.Status);
        Assert.StartsWith("off", off.Status);
        Assert.Equal(on.Values.Length, off.Values.Length);
        // One product through MKL's AVX2/AVX-512 kernels against its generic ones (on a CPU not Intel's).
        Tolerances.AssertClose(off.Values, on.Values, Tolerances.DifferentKernels, "product with the override on against off");
        // MKL's generic path is the vendor check's doing: on an Intel CPU both runs take the same path.
        if (CpuDescription.Current.IsIntel) Assert.Equal(on.Code, off.Code);
        if (CpuDescription.Current.IsAmd && System.Runtime.Intrinsics.X86.Avx2.IsSupported) Assert.True(on.Code > off.Code, $"{on.Code} vs {off.Code}");
    }

    [Fact]
    public void The_shared_object_has_the_elf_layout_the_loader_needs()
    {
        byte[] image = ElfSharedObject.ReturningConstants("libtest.so", [("first", 7), ("second", -3)]);
        Assert.Equal("\u007fELF"u8.ToArray(), image[..4]);
        Assert.Equal(3, BitConverter.ToUInt16(image, 16));          // ET_DYN
        Assert.Equal(62, BitConverter.ToUInt16(image, 18));         // x86-64
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return;
        string path = Path.Combine(Path.GetTempPath(), $"sharptune-elf-{Guid.NewGuid():N}.so");
        File.WriteAllBytes(path, image);
        try
        {
            IntPtr library = NativeLibrary.Load(path);
            Assert.Equal(7, Marshal.GetDelegateForFunctionPointer<IntFunction>(NativeLibrary.GetExport(library, "first"))());
            Assert.Equal(-3, Marshal.GetDelegateForFunctionPointer<IntFunction>(NativeLibrary.GetExport(library, "second"))());
            Assert.False(NativeLibrary.TryGetExport(library, "third", out _));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate int IntFunction();

    sealed record Probe(string Status, int Code, double[] Values);

    static Probe Parse(string output)
    {
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        string status = lines.Single(l => l.StartsWith("status ")).Substring(7);
        int code = int.Parse(lines.Single(l => l.StartsWith("code ")).Substring(5));
        double[] values = lines.Single(l => l.StartsWith("values ")).Substring(7).Split(' ').Select(v => double.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        return new Probe(status, code, values);
    }

    /// <summary>Runs the CLI's hidden probe (a seeded 257x263 @ 263x131 product) in a fresh process.</summary>
    static string RunProbe(bool disable)
    {
        var environment = new Dictionary<string, string> { [MklDispatch.EnvironmentVariable] = disable ? "0" : "1" };
        var (code, output, error) = CliProcess.Run(["info", "--mkl-probe"], environment);
        Assert.True(code == 0, $"probe failed: {output}\n{error}");
        return output;
    }
}
