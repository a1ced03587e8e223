using System.Text.Json;
using System.Text.Json.Serialization;

namespace SharpTune.Heads;

/// <summary>
/// Everything needed to rebuild a fine-tuned model and feed it data the way it was trained, saved beside
/// the weights as <c>sharptune_task.json</c>.
/// </summary>
public sealed record TaskSpec
{
    public const string FileName = "sharptune_task.json";

    [JsonPropertyName("task")] public TaskKind Kind { get; init; }
    [JsonPropertyName("num_labels")] public int NumLabels { get; init; }
    [JsonPropertyName("crf")] public bool UseCrf { get; init; }
    [JsonPropertyName("use_pooler")] public bool UsePooler { get; init; } = true;
    [JsonPropertyName("mean_pooling")] public bool MeanPooling { get; init; }
    [JsonPropertyName("max_length")] public int MaxLength { get; init; } = 128;
    [JsonPropertyName("label_separator")] public string LabelSeparator { get; init; } = "|";
    /// <summary>full, head, embeddings, freeze:K, or a parameter-efficient method's name.</summary>
    [JsonPropertyName("method")] public string Method { get; init; } = "full";
    /// <summary>The pretrained model the run started from (built-in name, folder or ONNX file).</summary>
    [JsonPropertyName("base_model")] public string BaseModel { get; init; } = "minilm";
    [JsonPropertyName("text_column")] public string TextColumn { get; init; } = "text";
    [JsonPropertyName("text_pair_column")] public string? TextPairColumn { get; init; }
    [JsonPropertyName("label_column")] public string LabelColumn { get; init; } = "label";

    [JsonIgnore] public HeadOptions Head => new(Kind, NumLabels, UseCrf, UsePooler, MeanPooling: MeanPooling);

    /// <summary>Whether the task labels words (read from CoNLL, a label per word) rather than whole texts.</summary>
    [JsonIgnore] public bool LabelsWords => !Head.IsSequenceTask;

    static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    public string ToJson() => JsonSerializer.Serialize(this, Options);

    public static TaskSpec Load(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path))
            throw new FileNotFoundException($"{folder}: not a SharpTune model (no {FileName}); give a run folder or its best/ or final/ folder", path);
        try
        {
            return JsonSerializer.Deserialize<TaskSpec>(File.ReadAllText(path), Options)
                ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid task description ({e.Message})", e);
        }
    }
}
