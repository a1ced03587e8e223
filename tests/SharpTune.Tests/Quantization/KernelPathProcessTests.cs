using System.Diagnostics;
using SharpTune.Quantization;

namespace SharpTune.Tests.Quantization;

/// <summary>
/// Each lower path in a process of its own, forced by the runtime's knobs (DOTNET_EnableAVX512=0 leaves AVX2,
/// DOTNET_EnableAVX2=0 leaves the portable path) or by SHARPTUNE_KERNELS, so the suite proves every path on any x86-64 CPU.
/// </summary>
public class KernelPathProcessTests
{
    [Theory]
    [InlineData("DOTNET_EnableAVX512", "0", KernelPath.Avx2)]
    [InlineData("DOTNET_EnableAVX2", "0", KernelPath.Portable)]
    [InlineData("SHARPTUNE_KERNELS", "portable", KernelPath.Portable)]
    [InlineData("SHARPTUNE_KERNELS", "avx2", KernelPath.Avx2)]
    public async Task A_process_with_a_lower_path_runs_it_and_its_products_hold_the_bound(string variable, string value, KernelPath ceiling)
    {
        var expected = ceiling < QuantizedKernels.Supported ? ceiling : QuantizedKernels.Supported;
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(typeof(TestProgram).Assembly.Location);
        start.ArgumentList.Add("kernel-paths");
        start.Environment[variable] = value;
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        string text = await output + await error;
        Assert.True(process.ExitCode == 0, text);
        Assert.Contains($"path {expected}", text);
        Assert.Contains("ok", text);
    }

    [Theory]
    [InlineData("SHARPTUNE_TILE_DTYPE", "fp64")]
    [InlineData("SHARPTUNE_KERNELS", "sse9")]
    public void The_tool_refuses_an_unknown_environment_choice_by_name_before_any_command(string variable, string value)
    {
        var (code, output, error) = CliProcess.Run(["info"], new Dictionary<string, string> { [variable] = value });
        Assert.Equal(1, code);
        Assert.Contains($"error: {variable}={value}: expected", error);
        Assert.DoesNotContain("internal error", error + output);
    }

    [Fact]
    public void An_unknown_kernel_path_is_refused_by_name()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(typeof(TestProgram).Assembly.Location);
        start.ArgumentList.Add("kernel-paths");
        start.Environment["SHARPTUNE_KERNELS"] = "sse9";
        using var process = Process.Start(start)!;
        string text = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.NotEqual(0, process.ExitCode);
        Assert.Contains("SHARPTUNE_KERNELS=sse9", text);
    }
}
