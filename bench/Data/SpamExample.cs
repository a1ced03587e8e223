namespace SharpTune.Bench.Data;

/// <summary>One row of data/spam/*.csv (written by scripts/fetch-datasets.sh): the text, spam or ham, and the corpus group.</summary>
public sealed record SpamExample(string Text, bool IsSpam, string Group)
{
    public static List<SpamExample> ReadCsv(string path)
    {
        var examples = new List<SpamExample>();
        foreach ((int line, Dictionary<string, string> fields) in CsvReader.ReadRecords(path))
        {
            if (!fields.TryGetValue("text", out string? text) || !fields.TryGetValue("label", out string? label))
                throw new InvalidDataException($"{path}: expected the columns text,label,group.");
            bool isSpam = label switch
            {
                "spam" => true,
                "ham" => false,
                _ => throw new InvalidDataException($"{path}:{line}: label '{label}', expected 'spam' or 'ham'."),
            };
            examples.Add(new SpamExample(text, isSpam, fields.GetValueOrDefault("group", "")));
        }
        return examples;
    }
}
