using System.Diagnostics;
using SharpTune.Tests.Cli;

namespace SharpTune.Tests.Samples;

/// <summary>
/// samples/FromCSharp against the library as a NuGet package: <c>dotnet pack</c> of src/SharpTune (the build the tests
/// already made, so no second compile), the sample restored from that folder outside the repository (none of its
/// Directory.Build.props), built, and run on a tiny GGUF: it fine-tunes a LoRA run and answers through IChatClient. The
/// run also shows that the package's buildTransitive step makes TorchSharp's native library load.
/// </summary>
public class FromCSharpSampleTests
{
    [Fact]
    public void The_sample_restores_the_packed_library_builds_fine_tunes_and_chats()
    {
        string repo = RepoRoot();
        string configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;   // bin/<configuration>/net10.0
        string version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
        string cached = Path.Combine(Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"), "sharptune", version);
        using var temp = new TestModels.TempFolder();
        try
        {
            string packages = temp.File("packages"), sample = temp.File("sample");
            Dotnet(repo, "pack", Path.Combine(repo, "src", "SharpTune", "SharpTune.csproj"), "-c", configuration, "--no-build",
                "-o", packages, $"-p:Version={version}");
            Assert.True(File.Exists(Path.Combine(packages, $"SharpTune.{version}.nupkg")), "dotnet pack wrote no package");

            Directory.CreateDirectory(sample);
            foreach (string file in Directory.GetFiles(Path.Combine(repo, "samples", "FromCSharp")))
                File.Copy(file, Path.Combine(sample, Path.GetFileName(file)));
            // The packed folder is the only source: every other package is in the global cache after the repository's restore.
            Dotnet(sample, "build", "--source", packages, $"-p:SharpTuneVersion={version}", "--disable-build-servers", "-nodeReuse:false");

            string dll = Path.Combine(sample, "bin", "Debug", "net10.0", "FromCSharp.dll");
            string output = Dotnet(sample, dll, CausalLmCliTests.TinyGguf(temp), CausalLmCliTests.Data(temp), temp.File("run"));
            Assert.Contains("reply: ", output);
            Assert.True(File.Exists(Path.Combine(temp.File("run"), "final", "sharptune_lm.json")), output);
            Assert.True(Directory.Exists(Path.Combine(temp.File("run"), "final", "adapter")), output);
        }
        finally
        {
            try { if (Directory.Exists(cached)) Directory.Delete(cached, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>Runs <c>dotnet ARGS</c> in <paramref name="folder"/>; its stdout, or a failure with both streams.</summary>
    static string Dotnet(string folder, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        // The test host's MSBuild variables would point the child at the test run's MSBuild instead of its own.
        foreach (string key in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(key);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {string.Join(' ', args)} did not finish in 5 minutes");
        }
        Assert.True(process.ExitCode == 0, $"dotnet {string.Join(' ', args)}: exit {process.ExitCode}\n{output.Result}\n{error.Result}");
        return output.Result;
    }

    static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SharpTune.slnx"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no SharpTune.slnx above {AppContext.BaseDirectory}");
    }
}
