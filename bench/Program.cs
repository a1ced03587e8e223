using SharpTune.Bench.Reporting;
using SharpTune.Bench.Suites;

namespace SharpTune.Bench;

/// <summary>
/// dotnet run --project bench -c Release -- &lt;suite&gt; [--quick]
/// Runs one suite, prints its table and writes bench/results/&lt;suite&gt;.json (&lt;suite&gt;.quick.json with --quick).
/// </summary>
public static class Program
{
    static SuiteRegistry CreateRegistry() => new SuiteRegistry()
        .Register(new MlNetSpamSuite())
        .Register(new SharpTuneSpamSuite("full", epochs: 2))
        .Register(new SpeedSuite())
        .Register(new InteropExportSuite())
        .Register(new PeftComparisonSuite());

    public static int Main(string[] args)
    {
        SuiteRegistry registry = CreateRegistry();
        bool quick = args.Contains("--quick");
        string[] names = args.Where(a => a != "--quick").ToArray();
        bool help = names.Length == 1 && names[0] is "-h" or "--help" or "list";
        if (names.Length != 1 || help)
        {
            PrintUsage(registry, help ? Console.Out : Console.Error);
            return help ? 0 : 2;
        }
        if (names[0].StartsWith('-') || !registry.TryGet(names[0], out IBenchSuite suite))
        {
            Console.Error.WriteLine($"unknown suite or option '{names[0]}'.");
            PrintUsage(registry, Console.Error);
            return 2;
        }

        string repoRoot = FindRepoRoot();
        var context = new BenchContext(repoRoot, quick);
        try
        {
            Console.WriteLine($"suite {suite.Name}{(quick ? " (quick)" : "")}: {suite.Description}");
            BenchResult result = suite.Run(context);
            ResultTable.Print(result);
            string path = ResultWriter.Write(result, Path.Combine(repoRoot, "bench", "results"));
            Console.WriteLine($"\nwrote {Path.GetRelativePath(repoRoot, path)}");
            return 0;
        }
        catch (Exception e) when (e is MissingDataException or InvalidDataException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    static void PrintUsage(SuiteRegistry registry, TextWriter output)
    {
        output.WriteLine("usage: dotnet run --project bench -c Release -- <suite> [--quick]");
        output.WriteLine("suites:");
        foreach (IBenchSuite s in registry.All) output.WriteLine($"  {s.Name,-14} {s.Description}");
    }

    /// <summary>The folder holding SharpTune.slnx, searched upwards from the working directory, then from the program.</summary>
    static string FindRepoRoot()
    {
        foreach (string start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "SharpTune.slnx"))) return dir.FullName;
        }
        return Environment.CurrentDirectory;
    }
}
