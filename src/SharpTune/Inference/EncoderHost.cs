using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.ModelFolders;

namespace SharpTune.Inference;

/// <summary>One label's score of a text or a word.</summary>
public sealed record ClassifiedText(IReadOnlyList<string> Labels, IReadOnlyDictionary<string, float>? Probabilities, float? Value,
    IReadOnlyList<string>? Words);

/// <summary>
/// An encoder served under names: the base model for embeddings, and fine-tuned task models (adapters over the base, or
/// fully fine-tuned folders) for classification, each through a <see cref="Predictor"/>. Adapters share one copy of the
/// base through an <see cref="AdapterHost"/> (a second copy beside the embedder's: encoders are small).
/// </summary>
public sealed class EncoderHost : IDisposable
{
    readonly Dictionary<string, Predictor> taskModels = new(StringComparer.Ordinal);
    AdapterHost? adapters;

    public EncoderHost(string baseModel, string? baseName = null)
    {
        BasePath = baseModel;
        BaseName = baseName ?? LanguageModelHost.DefaultName(baseModel);
        Embedder = TextEmbedder.Load(baseModel);
    }

    public string BasePath { get; }
    public string BaseName { get; }
    public TextEmbedder Embedder { get; }

    /// <summary>The names of the task models, for <c>/v1/models</c>.</summary>
    public IReadOnlyCollection<string> TaskModels => taskModels.Keys;

    public bool TryGetTaskModel(string name, out Predictor predictor) => taskModels.TryGetValue(name, out predictor!);

    /// <summary>Adds a fine-tuned encoder run or model folder under <paramref name="name"/>.</summary>
    public void Add(string name, string folder)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException($"--adapter {name}={folder}: the name is empty");
        if (name == BaseName || taskModels.ContainsKey(name)) throw new ArgumentException($"--adapter {name}={folder}: a model named '{name}' is already served");
        string resolved = TaskModelFolder.Resolve(folder);
        if (Directory.Exists(Path.Combine(resolved, TaskModelFolder.AdapterFolder)))
        {
            adapters ??= new AdapterHost(BasePath);
            adapters.Add(name, resolved);
            taskModels[name] = new Predictor(adapters.Get(name));
        }
        else taskModels[name] = new Predictor(resolved);
    }

    /// <summary>
    /// Labels and probabilities (classification), a value (regression), or a label per word (token tasks: the text is split on
    /// white space).
    /// </summary>
    public IReadOnlyList<ClassifiedText> Classify(string name, IReadOnlyList<string> texts)
    {
        var predictor = taskModels[name];
        if (predictor.Spec.Kind == TaskKind.Tokens)
        {
            var words = texts.Select(t => (IReadOnlyList<string>)t.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)).ToList();
            var examples = words.Select((w, i) => new TokenExample(w, null, $"input[{i}]")).ToList();
            return predictor.PredictWords(examples).Select((p, i) => new ClassifiedText(p.Labels, null, null, words[i])).ToList();
        }
        var rows = texts.Select((t, i) => new TextExample(t, null, null, $"input[{i}]")).ToList();
        return predictor.PredictTexts(rows).Select(p => new ClassifiedText(p.Labels, p.Probabilities, p.Value, null)).ToList();
    }

    public void Dispose()
    {
        foreach (var predictor in taskModels.Values) predictor.Dispose();
        adapters?.Dispose();
        Embedder.Dispose();
    }
}
