namespace SharpTune.Bench.Suites;

/// <summary>The suites the bench can run, by name; registering a name twice is an error.</summary>
public sealed class SuiteRegistry
{
    readonly SortedDictionary<string, IBenchSuite> suites = new(StringComparer.Ordinal);

    public SuiteRegistry Register(IBenchSuite suite)
    {
        if (!suites.TryAdd(suite.Name, suite))
            throw new InvalidOperationException($"a suite named '{suite.Name}' is already registered.");
        return this;
    }

    public IEnumerable<IBenchSuite> All => suites.Values;

    public bool TryGet(string name, out IBenchSuite suite) => suites.TryGetValue(name, out suite!);
}
