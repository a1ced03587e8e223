using System.Diagnostics;

namespace SharpTune.Tests;

/// <summary>
/// Starts the sharptune CLI in a process of its own (the build output beside the tests), for what one process
/// cannot show: start-up state such as MKL's dispatch, and that a run is a function of its options alone.
/// </summary>
static class CliProcess
{
    public static ProcessStartInfo Start(IEnumerable<string> args, string? workingDirectory = null)
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "SharpTune.Cli.dll");
        if (!File.Exists(cli)) throw new FileNotFoundException("the CLI is not built beside the tests", cli);
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? AppContext.BaseDirectory,
        };
        start.ArgumentList.Add(cli);
        foreach (string arg in args) start.ArgumentList.Add(arg);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        // The CLI chooses its allocator at start (NativeAllocator): a preload in the test host's environment would decide for it.
        start.Environment.Remove("LD_PRELOAD");
        start.Environment.Remove(SharpTune.Native.NativeAllocator.RestartMarker);
        return start;
    }

    /// <summary>Runs to the end and returns exit code, stdout and stderr.</summary>
    public static (int Code, string Out, string Error) Run(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null,
        TimeSpan? timeout = null)
    {
        var start = Start(args);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout ?? TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"sharptune {string.Join(' ', args)} did not finish");
        }
        return (process.ExitCode, output.Result, error.Result);
    }
}
