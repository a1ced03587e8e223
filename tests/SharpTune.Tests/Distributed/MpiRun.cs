using System.Diagnostics;

namespace SharpTune.Tests.Distributed;

/// <summary>
/// Starts the sharptune CLI under <c>mpirun -np N</c>, as a user would on one machine. Tests marked
/// <see cref="MpiFactAttribute"/> are skipped where Open MPI's mpirun is not installed (.ci/run installs it).
/// </summary>
static class MpiRun
{
    public static string? Mpirun { get; } = FindOnPath("mpirun");

    public static (int Code, string Out, string Error, TimeSpan Elapsed) Run(int processes, IEnumerable<string> args,
        IReadOnlyDictionary<string, string>? environment = null, TimeSpan? timeout = null, IEnumerable<string>? secondArgs = null)
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "SharpTune.Cli.dll");
        var start = new ProcessStartInfo(Mpirun ?? throw new InvalidOperationException("mpirun is not installed"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        // One machine with few cores: allow more ranks than cores, and don't pin each rank to one core.
        string[] common = ["--oversubscribe", "--bind-to", "none"];
        foreach (var key in (environment ?? new Dictionary<string, string>()).Keys) common = [.. common, "-x", key];
        void Program(int np, IEnumerable<string> programArgs)
        {
            foreach (string a in (string[])["-np", np.ToString(), .. common, "dotnet", cli, .. programArgs]) start.ArgumentList.Add(a);
        }
        if (secondArgs is null) Program(processes, args);
        else
        {
            // MPMD: one rank with args, the others with secondArgs (to give ranks different command lines).
            Program(1, args);
            start.ArgumentList.Add(":");
            Program(processes - 1, secondArgs);
        }
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        // Open MPI refuses root unless told; CI containers run as root.
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout ?? TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"mpirun -np {processes} sharptune {string.Join(' ', args)} did not finish\n{error.Result}{output.Result}");
        }
        return (process.ExitCode, output.Result, error.Result, clock.Elapsed);
    }

    static string? FindOnPath(string name) => (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
        .Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);
}

/// <summary>A test that runs under mpirun: skipped, saying why, where Open MPI is not installed.</summary>
public sealed class MpiFactAttribute : FactAttribute
{
    public MpiFactAttribute()
    {
        if (MpiRun.Mpirun is null) Skip = "mpirun not found: install Open MPI (apt-get install openmpi-bin) to run the data-parallel tests";
    }
}

/// <summary>A theory that runs under mpirun: skipped where Open MPI is not installed.</summary>
public sealed class MpiTheoryAttribute : TheoryAttribute
{
    public MpiTheoryAttribute()
    {
        if (MpiRun.Mpirun is null) Skip = "mpirun not found: install Open MPI (apt-get install openmpi-bin) to run the data-parallel tests";
    }
}
