using SharpTune.Bench.Reporting;

namespace SharpTune.Bench.Suites;

/// <summary>One benchmark: trains and evaluates one model on one data set and returns what it measured.</summary>
public interface IBenchSuite
{
    /// <summary>The name given on the command line, e.g. mlnet-spam.</summary>
    string Name { get; }

    string Description { get; }

    BenchResult Run(BenchContext context);
}

/// <summary>
/// What every suite gets: where the repository's data lives, whether to run the quick variant, and whether a suite made
/// of child runs may take a child's result already written after the suite's inputs instead of running it again
/// (<c>--reuse</c>; the lm suite only).
/// </summary>
public sealed record BenchContext(string RepoRoot, bool Quick, bool Reuse = false)
{
    public string DataPath(params string[] parts) => Path.Combine([RepoRoot, "data", .. parts]);

    /// <summary>Throws <see cref="MissingDataException"/> naming the fetch script when a data file is absent.</summary>
    public string RequireDataFile(params string[] parts)
    {
        string path = DataPath(parts);
        if (!File.Exists(path))
            throw new MissingDataException(
                $"{Path.GetRelativePath(RepoRoot, path)} not found. Fetch the data sets first with scripts/fetch-datasets.sh (see docs/datasets.md).");
        return path;
    }
}

public sealed class MissingDataException(string message) : Exception(message);
