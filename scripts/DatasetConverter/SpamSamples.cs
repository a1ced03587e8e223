namespace SharpTune.DatasetConverter;

/// <summary>
/// The small spam sample committed under samples/spam/: a fixed number of messages per group, taken in
/// ascending MD5 order (a deterministic draw that is unrelated to content), texts cut to 1,000 characters.
/// Hard ham is over-represented on purpose so that the validation score shows it.
/// </summary>
public static class SpamSamples
{
    public const int MaxChars = 1000;

    // Per group: spam and ham are balanced within each file.
    static readonly Dictionary<string, int> TrainQuota = new()
    {
        ["easy-ham-1"] = 80, ["easy-ham-2"] = 80, ["hard-ham-1"] = 40, ["spam-1"] = 100, ["spam-2"] = 100,
    };

    static readonly Dictionary<string, int> ValidationQuota = new()
    {
        ["easy-ham-1"] = 25, ["easy-ham-2"] = 25, ["hard-ham-1"] = 25, ["spam-1"] = 35, ["spam-2"] = 40,
    };

    public static void Write(IReadOnlyList<SpamMessage> train, IReadOnlyList<SpamMessage> test, string samplesDir)
    {
        Directory.CreateDirectory(samplesDir);
        var trainSample = Select(train, TrainQuota, "train");
        var validationSample = Select(test, ValidationQuota, "test");
        SpamAssassin.Write(Path.Combine(samplesDir, "train.csv"), trainSample, MaxChars);
        SpamAssassin.Write(Path.Combine(samplesDir, "validation.csv"), validationSample, MaxChars);

        Console.WriteLine($"SpamAssassin sample -> {samplesDir} (texts cut to {MaxChars} characters)");
        SpamAssassin.PrintCounts("train", trainSample);
        SpamAssassin.PrintCounts("validation", validationSample);
    }

    /// <summary>The quota's messages of each group with the smallest MD5s, listed in MD5 order so labels interleave.</summary>
    static List<SpamMessage> Select(IReadOnlyList<SpamMessage> split, Dictionary<string, int> quota, string splitName)
    {
        var selected = new List<SpamMessage>();
        foreach ((string group, int count) in quota)
        {
            var candidates = split.Where(m => m.Group == group).OrderBy(m => m.Checksum, StringComparer.Ordinal).ToList();
            if (candidates.Count < count)
                throw new InvalidDataException($"the {splitName} split has {candidates.Count} messages in {group}; the sample needs {count}.");
            selected.AddRange(candidates.Take(count));
        }
        return selected.OrderBy(m => m.Checksum, StringComparer.Ordinal).ToList();
    }
}
