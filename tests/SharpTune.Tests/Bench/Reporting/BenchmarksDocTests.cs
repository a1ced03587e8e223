using System.Text.Json;
using SharpTune.Bench.Reporting;

namespace SharpTune.Tests.Bench.Reporting;

/// <summary>docs/benchmarks.md is regenerated after any one suite runs: it must keep every suite that did not run.</summary>
public class BenchmarksDocTests
{
    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SharpTune.slnx"))) return dir.FullName;
        throw new DirectoryNotFoundException("the repository root (SharpTune.slnx) is not above the test binaries");
    }

    static JsonElement Result(string suite, string finished, double value) => JsonDocument.Parse($$"""
        {
          "suite": "{{suite}}", "model": "tiny", "dataset": "toy", "quick": false, "train_examples": 3, "test_examples": 5,
          "train_seconds": 1.5, "predict_seconds": 0.25, "metrics": { "accuracy": {{value}}, "tokens_per_s": 1234.5 },
          "machine": { "os": "Linux", "architecture": "X64", "logical_cores": 7, "runtime": ".NET 10" },
          "finished_at": "{{finished}}"
        }
        """).RootElement.Clone();

    const string Page = """
        # Benchmarks

        Header text.
        Machine: Old, X64, 2 logical cores, .NET 10.

        ## mlnet-spam

        `dotnet run --project bench -c Release -- mlnet-spam`, finished 2026-11-28T22:47:25+00:00

        | metric | value |
        | --- | --- |
        | accuracy | 98.15 % |

        ## speed

        `dotnet run --project bench -c Release -- speed`, finished 2026-11-29T02:04:21+00:00

        | metric | value |
        | --- | --- |
        | infer_b8_ratio_vs_onnxruntime | 1.123 |

        """;

    static Dictionary<string, string> Sections(string page) => BenchmarksDoc.Sections(page).ToDictionary(s => s.Name, s => s.Text);

    [Fact]
    public void A_suite_that_ran_replaces_its_section_and_every_other_section_is_kept_word_for_word()
    {
        var results = new SortedDictionary<string, JsonElement>(StringComparer.Ordinal)
        {
            ["speed"] = Result("speed", "2026-12-07T05:00:00+00:00", 0.5),
            ["pos"] = Result("pos", "2026-12-07T04:00:00+00:00", 0.96),
        };
        string page = BenchmarksDoc.Render(results, Page);
        var before = Sections(Page);
        var after = Sections(page);

        Assert.Equal(["mlnet-spam", "pos", "speed"], after.Keys);       // the new suite in order, the old one kept
        Assert.Equal(before["mlnet-spam"].TrimEnd('\n'), after["mlnet-spam"].TrimEnd('\n'));
        Assert.Contains("finished 2026-12-07T05:00:00+00:00", after["speed"]);
        Assert.DoesNotContain("1.123", after["speed"]);
        Assert.Contains("| accuracy | 50.00 % |", after["speed"]);
        Assert.Contains("| tokens_per_s | 1,234 |", after["speed"]);
        Assert.Contains("Machine of the latest run: Linux, X64, 7 logical cores", page);
    }

    [Fact]
    public void With_no_results_every_section_and_the_machine_line_are_kept()
    {
        string page = BenchmarksDoc.Render(new Dictionary<string, JsonElement>(), Page);
        var (before, after) = (Sections(Page), Sections(page));
        Assert.Equal(before.Keys, after.Keys);
        foreach (var (name, text) in before) Assert.Equal(text.TrimEnd('\n'), after[name].TrimEnd('\n'));
        Assert.Contains("Machine: Old, X64, 2 logical cores, .NET 10.", page);
        Assert.Equal(page, BenchmarksDoc.Render(new Dictionary<string, JsonElement>(), page));   // a fixed point
    }

    [Fact]
    public void Quick_results_never_reach_the_page()
    {
        using var temp = new TestModels.TempFolder();
        File.WriteAllText(temp.File("speed.json"), Result("speed", "2026-12-07T05:00:00+00:00", 0.5).GetRawText());
        File.WriteAllText(temp.File("speed.quick.json"), Result("speed", "2026-12-07T06:00:00+00:00", 0.1).GetRawText());
        Assert.Equal(["speed"], BenchmarksDoc.ReadResults(temp.Path).Keys);
    }

    [Fact]
    public void The_committed_page_is_what_the_generator_writes_from_the_committed_results()
    {
        string root = RepositoryRoot();
        string page = File.ReadAllText(Path.Combine(root, "docs", "benchmarks.md"));
        var results = BenchmarksDoc.ReadResults(Path.Combine(root, "bench", "results"));
        Assert.Equal(page, BenchmarksDoc.Render(results, page));
        // Every committed result has its section, and the page keeps the suites whose results predate committing them.
        var names = Sections(page).Keys.ToHashSet();
        Assert.All(results.Keys, suite => Assert.Contains(suite, names));
        Assert.All(new[] { "mlnet-spam", "spam-full", "spam-lora", "peft", "pos", "speed" }, suite => Assert.Contains(suite, names));
    }
}
