using System.Text;
using SharpTune.Native;

namespace SharpTune.Tests.Native;

/// <summary>
/// The allocator choice (<see cref="NativeAllocator"/>): values read once, with the variable named on a bad one; and, in
/// CLI processes, the restart in place: a library is preloaded, arguments arrive byte for byte, a required library that
/// is missing stops the tool before any work. The preloaded library in the process tests is one written here (an ELF
/// object with one function), so they hold on machines without tcmalloc.
/// </summary>
public class NativeAllocatorTests
{
    [Theory]
    [InlineData(null, NativeAllocator.Mode.Auto)]
    [InlineData("", NativeAllocator.Mode.Auto)]
    [InlineData(" Auto ", NativeAllocator.Mode.Auto)]
    [InlineData("tcmalloc", NativeAllocator.Mode.Required)]
    [InlineData("system", NativeAllocator.Mode.System)]
    [InlineData("glibc", NativeAllocator.Mode.System)]
    public void Each_named_choice_resolves_to_its_mode(string? value, NativeAllocator.Mode mode)
    {
        var choice = NativeAllocator.Parse(value, () => "/found/libtcmalloc_minimal.so.4");
        Assert.Equal(mode, choice.Mode);
        Assert.Equal(mode == NativeAllocator.Mode.System ? null : "/found/libtcmalloc_minimal.so.4", choice.Library);
    }

    [Fact]
    public void A_path_is_required_and_resolved_only_when_the_file_exists()
    {
        if (!OperatingSystem.IsLinux()) return;
        var found = NativeAllocator.Parse("/proc/self/exe", () => null);                // a file every Linux process has
        Assert.Equal((NativeAllocator.Mode.Required, "/proc/self/exe"), (found.Mode, found.Library));
        var missing = NativeAllocator.Parse("/nonexistent-sharptune/libabsent.so", () => "/found/libtcmalloc_minimal.so.4");
        Assert.Equal((NativeAllocator.Mode.Required, (string?)null), (missing.Mode, missing.Library));
    }

    [Theory]
    [InlineData("/opt/my libs/libtcmalloc.so")]
    [InlineData("/opt/a:b/libjemalloc.so.2")]
    public void A_path_ld_preload_would_split_is_refused(string path)
    {
        var e = Assert.Throws<InvalidOperationException>(() => NativeAllocator.Parse(path, () => null));
        Assert.Contains($"SHARPTUNE_ALLOCATOR='{path}'", e.Message);
        Assert.Contains("space or a colon", e.Message);
    }

    [Fact]
    public void A_value_that_names_no_allocator_is_refused_with_the_variable_and_the_choices()
    {
        var e = Assert.Throws<InvalidOperationException>(() => NativeAllocator.Parse("jemallc", () => null));
        Assert.Contains("SHARPTUNE_ALLOCATOR='jemallc'", e.Message);
        Assert.Contains("auto", e.Message);
        Assert.Contains("system", e.Message);
    }

    [Fact]
    public void The_restarted_environment_keeps_every_variable_and_puts_the_library_first()
    {
        var raw = new List<byte[]>
        {
            Encoding.UTF8.GetBytes("HOME=/home/ü"),
            new byte[] { (byte)'O', (byte)'D', (byte)'D', (byte)'=', 0xff, 0xfe },             // not UTF-8: kept as bytes
            Encoding.UTF8.GetBytes("LD_PRELOAD=/opt/libfirst.so"),
            Encoding.UTF8.GetBytes($"{NativeAllocator.RestartMarker}=stale"),
        };
        var env = NativeAllocator.RestartEnvironment(raw, "/usr/lib/libtcmalloc_minimal.so.4");
        Assert.Equal(raw[0], env[0]);
        Assert.Equal(raw[1], env[1]);
        var strings = env.Select(Encoding.UTF8.GetString).ToList();
        Assert.Single(strings, s => s.StartsWith("LD_PRELOAD=", StringComparison.Ordinal));
        Assert.Contains("LD_PRELOAD=/usr/lib/libtcmalloc_minimal.so.4:/opt/libfirst.so", strings);
        Assert.Contains($"{NativeAllocator.RestartMarker}=preload=/opt/libfirst.so", strings);
        Assert.Single(strings, s => s.StartsWith(NativeAllocator.RestartMarker, StringComparison.Ordinal));
        Assert.Contains(strings, s => s.StartsWith("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD=", StringComparison.Ordinal));

        var own = NativeAllocator.RestartEnvironment([Encoding.UTF8.GetBytes("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD=5")], "/lib/x.so")
            .Select(Encoding.UTF8.GetString).ToList();
        Assert.Equal(["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD=5", "LD_PRELOAD=/lib/x.so", $"{NativeAllocator.RestartMarker}=preload="], own);
    }

    [Fact]
    public void The_cli_restarts_itself_with_the_library_preloaded_and_its_arguments_intact()
    {
        if (!CanPreloadProbes) return;
        using var temp = new TestModels.TempFolder();
        using var probes = new ProbeFolder();
        string library = probes.Library("libsharptune_preload_probe.so");

        var (code, output, error) = CliProcess.Run(["info", "--mkl-probe"], new Dictionary<string, string> { [NativeAllocator.EnvironmentVariable] = library });
        Assert.True(code == 0, $"the probe failed: {output}\n{error}");
        Assert.Contains($"allocator {Path.GetFileName(library)}, preloaded at start-up", output);

        // Arguments with spaces and non-ASCII letters reach the restarted process as they were given.
        string model = Path.Combine(temp.Path, "no such", "módel ü");
        (code, output, error) = CliProcess.Run(["info", "--model", model], new Dictionary<string, string> { [NativeAllocator.EnvironmentVariable] = library });
        Assert.Equal(1, code);
        Assert.Contains($"Model '{model}' not found", error);
    }

    [Fact]
    public void The_cli_stays_on_the_c_library_malloc_when_asked()
    {
        if (!OperatingSystem.IsLinux()) return;
        var (code, output, error) = CliProcess.Run(["info", "--mkl-probe"], new Dictionary<string, string> { [NativeAllocator.EnvironmentVariable] = "system" });
        Assert.True(code == 0, $"the probe failed: {output}\n{error}");
        Assert.Contains("allocator the C library's malloc (SHARPTUNE_ALLOCATOR=system)", output);
    }

    [Fact]
    public void By_default_the_cli_runs_on_tcmalloc_where_it_is_installed_and_says_so_where_it_is_not()
    {
        if (!OperatingSystem.IsLinux()) return;
        var (code, output, error) = CliProcess.Run(["info", "--mkl-probe"], new Dictionary<string, string> { [NativeAllocator.EnvironmentVariable] = "auto" });
        Assert.True(code == 0, $"the probe failed: {output}\n{error}");
        if (NativeAllocator.FindTcmalloc() is not null) Assert.Contains("allocator libtcmalloc_minimal.so.4", output);
        else Assert.Contains($"{NativeAllocator.TcmallocFile} was not found", output);
    }

    [Fact]
    public void A_required_library_that_is_missing_stops_the_cli_before_any_work()
    {
        if (!OperatingSystem.IsLinux()) return;
        const string missing = "/nonexistent-sharptune/libmissing_malloc.so";
        var (code, output, error) = CliProcess.Run(["info", "--mkl-probe"], new Dictionary<string, string> { [NativeAllocator.EnvironmentVariable] = missing });
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Equal($"error: SHARPTUNE_ALLOCATOR: the allocator library '{missing}' does not exist (give the file's path)", error.Trim());
    }

    [Fact]
    public void An_allocator_the_caller_preloaded_is_kept_and_one_that_contradicts_the_choice_is_refused()
    {
        if (!CanPreloadProbes) return;
        using var probes = new ProbeFolder();
        string preloaded = probes.Library("libtcmalloc_sharptune_probe.so");          // taken for tcmalloc by its name
        string other = probes.Library("libother_sharptune_probe.so");
        (int, string, string) Run(string choice) => CliProcess.Run(["info", "--mkl-probe"],
            new Dictionary<string, string> { ["LD_PRELOAD"] = preloaded, [NativeAllocator.EnvironmentVariable] = choice });

        var (code, output, error) = Run("auto");
        Assert.True(code == 0, $"the probe failed: {output}\n{error}");
        Assert.Contains("allocator libtcmalloc_sharptune_probe.so, preloaded by the caller's LD_PRELOAD", output);

        (code, output, error) = Run("system");
        Assert.Equal(1, code);
        Assert.Contains("SHARPTUNE_ALLOCATOR=system, but libtcmalloc_sharptune_probe.so is already preloaded by the caller's LD_PRELOAD: unset LD_PRELOAD", error);

        (code, output, error) = Run(other);
        Assert.Equal(1, code);
        Assert.Contains("another allocator, libtcmalloc_sharptune_probe.so, is already preloaded", error);
    }

    /// <summary>The probe libraries are x86-64 ELF objects (<see cref="ElfSharedObject"/>), preloadable on Linux x64;
    /// LD_PRELOAD splits on spaces and colons, so the test folder's path must have neither.</summary>
    static bool CanPreloadProbes => OperatingSystem.IsLinux() && System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64
        && !AppContext.BaseDirectory.Contains(' ') && !AppContext.BaseDirectory.Contains(':');

    /// <summary>
    /// Shared objects that define one function each: preloading one changes nothing but shows in the process's maps.
    /// Written beside the tests rather than in the temp folder, which may be mounted noexec.
    /// </summary>
    sealed class ProbeFolder : IDisposable
    {
        readonly string folder = Path.Combine(AppContext.BaseDirectory, "preload-probes", Guid.NewGuid().ToString("N"));

        public ProbeFolder() => Directory.CreateDirectory(folder);

        public string Library(string name)
        {
            string path = Path.Combine(folder, name);
            File.WriteAllBytes(path, ElfSharedObject.ReturningConstants(name, [("sharptune_preload_probe", 7)]));
            return path;
        }

        public void Dispose()
        {
            try { Directory.Delete(folder, recursive: true); } catch (IOException) { }
        }
    }
}
