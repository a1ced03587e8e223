using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SharpTune.Data;

/// <summary>
/// The label set of a task: id ↔ label name. Built from the training examples with labels sorted
/// ordinally, so the same data always gives the same ids on every machine and culture. Saved as
/// Hugging Face's <c>id2label</c>/<c>label2id</c> pair, the same shape as in a model's config.json.
/// </summary>
public sealed class LabelMap
{
    readonly string[] labels;
    readonly Dictionary<string, int> ids;

    /// <summary>A map whose ids are the positions in <paramref name="labelsInIdOrder"/>.</summary>
    /// <exception cref="ArgumentException">A label is empty or appears twice.</exception>
    public LabelMap(IEnumerable<string> labelsInIdOrder)
    {
        labels = labelsInIdOrder.ToArray();
        ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < labels.Length; i++)
        {
            if (string.IsNullOrEmpty(labels[i])) throw new ArgumentException($"label {i} is empty");
            if (!ids.TryAdd(labels[i], i)) throw new ArgumentException($"label '{labels[i]}' appears twice");
        }
    }

    /// <summary>Labels in id order.</summary>
    public IReadOnlyList<string> Labels => labels;

    public int Count => labels.Length;

    /// <summary>The distinct labels, sorted ordinally.</summary>
    public static LabelMap FromLabels(IEnumerable<string> labels) =>
        new(labels.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal));

    /// <summary>Labels of sequence examples. Pass the separator for multi-label data so each
    /// listed name becomes a label; leave it null for single-label data.</summary>
    /// <exception cref="DataFormatException">An example has no label (it was read unlabelled).</exception>
    public static LabelMap FromExamples(IEnumerable<TextExample> examples, string? multiLabelSeparator = null) =>
        FromLabels(examples.SelectMany(e => Split(RequireLabel(e.Label, e.Source), multiLabelSeparator)));

    /// <summary>Labels of every token of every sentence.</summary>
    public static LabelMap FromExamples(IEnumerable<TokenExample> examples) =>
        FromLabels(examples.SelectMany(e => e.Labels ?? throw new DataFormatException(e.Source, "sentence has no labels")));

    public bool Contains(string label) => ids.ContainsKey(label);

    public bool TryGetId(string label, out int id) => ids.TryGetValue(label, out id);

    /// <summary>The id of a label; a label unseen in training is an error naming where it occurs.</summary>
    /// <param name="source">Where the label was read (<c>path:line</c>), for the message.</param>
    public int GetId(string label, string source)
    {
        if (ids.TryGetValue(label, out int id)) return id;
        const int shown = 20;
        string known = string.Join(", ", labels.Take(shown).Select(l => $"'{l}'")) + (labels.Length > shown ? $", ... ({labels.Length} in all)" : "");
        throw new DataFormatException(source, $"label '{label}' was not seen in the training data; known labels: {known}");
    }

    public string GetLabel(int id) =>
        id >= 0 && id < labels.Length ? labels[id] : throw new ArgumentOutOfRangeException(nameof(id), id, $"label ids are 0..{labels.Length - 1}");

    /// <summary>The class id of a single-label example.</summary>
    public int Encode(TextExample example) => GetId(RequireLabel(example.Label, example.Source), example.Source);

    /// <summary>The 0/1 target vector of a multi-label example, length <see cref="Count"/>.</summary>
    public float[] EncodeMultiHot(TextExample example, string separator)
    {
        var target = new float[labels.Length];
        foreach (var label in Split(RequireLabel(example.Label, example.Source), separator))
            target[GetId(label, example.Source)] = 1f;
        return target;
    }

    /// <summary>One id per word of a token example.</summary>
    public int[] Encode(TokenExample example)
    {
        var tags = example.Labels ?? throw new DataFormatException(example.Source, "sentence has no labels");
        return tags.Select(t => GetId(t, example.Source)).ToArray();
    }

    /// <summary>Hugging Face's id2label: ids written as strings, as JSON object keys must be.</summary>
    public IReadOnlyDictionary<string, string> Id2Label =>
        labels.Select((l, i) => (l, i)).ToDictionary(p => p.i.ToString(CultureInfo.InvariantCulture), p => p.l);

    public IReadOnlyDictionary<string, int> Label2Id => ids;

    sealed record Json(
        [property: JsonPropertyName("id2label")] Dictionary<string, string>? Id2Label,
        [property: JsonPropertyName("label2id")] Dictionary<string, int>? Label2Id);

    static readonly JsonSerializerOptions WriteOptions = new() { WriteIndented = true };

    public string ToJson() => JsonSerializer.Serialize(new Json(Id2Label.ToDictionary(), ids), WriteOptions);

    public void Save(string path) => File.WriteAllText(path, ToJson() + "\n");

    public static LabelMap Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Label map not found: {path}", path);
        return FromJson(File.ReadAllText(path), path);
    }

    /// <summary>Reads the id2label/label2id pair. Ids must be 0..n-1; label2id, when present, must agree.</summary>
    /// <param name="source">Named in error messages, usually the file path.</param>
    public static LabelMap FromJson(string json, string source = "label map")
    {
        Json? data;
        try
        {
            data = JsonSerializer.Deserialize<Json>(json);
        }
        catch (JsonException e)
        {
            throw new DataFormatException(source, $"not a valid label map; expected {{\"id2label\": {{\"0\": \"...\"}}, \"label2id\": {{...}}}} ({e.Message})");
        }
        if (data?.Id2Label is not { Count: > 0 } id2label) throw new DataFormatException(source, "label map has no 'id2label' entries");
        var ordered = new string[id2label.Count];
        foreach (var (key, label) in id2label)
        {
            if (!int.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out int id) || id >= ordered.Length)
                throw new DataFormatException(source, $"id2label key '{key}' is not an id in 0..{ordered.Length - 1}");
            ordered[id] = label;
        }
        LabelMap map;
        try
        {
            map = new LabelMap(ordered);
        }
        catch (ArgumentException e)
        {
            throw new DataFormatException(source, $"id2label: {e.Message}");
        }
        foreach (var (label, id) in data.Label2Id ?? [])
            if (!map.TryGetId(label, out int expected) || expected != id)
                throw new DataFormatException(source, $"label2id maps '{label}' to {id}, but id2label disagrees");
        return map;
    }

    static string RequireLabel(string? label, string source) =>
        label ?? throw new DataFormatException(source, "example has no label (was the data read as unlabelled?)");

    static IEnumerable<string> Split(string label, string? separator) =>
        separator is null ? [label] : label.Split(separator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
