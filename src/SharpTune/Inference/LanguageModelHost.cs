using SharpTune.Heads;
using SharpTune.ModelFolders;
using SharpTune.Models.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Inference;

/// <summary>A model a <see cref="LanguageModelHost"/> serves under a name: the base, or a fine-tuned run over it.</summary>
/// <param name="SharedTensors">Parameters that are the base's own tensors (not copies).</param>
/// <param name="RunsAlone">A prompt method's model: its requests decode in batches of their own (<see cref="Generation.DecodeRequest.RunsAlone"/>).</param>
public sealed record HostedLanguageModel(string Name, LanguageModel Model, int SharedTensors, bool RunsAlone);

/// <summary>
/// One decoder base model in memory with any number of fine-tuned runs over it, each under a name, as the decoder
/// counterpart of <see cref="AdapterHost"/>. A run's model is loaded as <c>generate --model RUN</c> loads it; then every
/// parameter equal to the base's (all the frozen ones of an adapter run) is pointed at the base's tensor and its copy
/// freed, so adapters cost their own weights only. A GGUF base's stored blocks are a read-only mapping of the file,
/// which the operating system shares between the models. A fully fine-tuned run shares nothing and costs a whole model.
/// </summary>
public sealed class LanguageModelHost : IDisposable
{
    readonly Dictionary<string, HostedLanguageModel> models = new(StringComparer.Ordinal);
    readonly WeightStorage dtype;

    /// <param name="baseModel">A GGUF file or a decoder's Hugging Face folder, or a fine-tuned run (then served as it is).</param>
    /// <param name="baseName">The name requests use for the base; default: the file or folder's name.</param>
    public LanguageModelHost(string baseModel, WeightStorage dtype = default, string? baseName = null, string? chatTemplateFile = null)
    {
        this.dtype = dtype;
        BasePath = baseModel;
        BaseName = baseName ?? DefaultName(baseModel);
        Base = LanguageModelFolder.Load(baseModel, dtype, chatTemplateFile);
        Base.Model.Module.eval();
        models[BaseName] = new HostedLanguageModel(BaseName, Base, 0, RunsAlone(Base.Model));
    }

    public string BasePath { get; }
    public string BaseName { get; }
    public LanguageModel Base { get; }

    /// <summary>Every model by name, the base first.</summary>
    public IReadOnlyCollection<HostedLanguageModel> Models => models.Values;

    public bool TryGet(string name, out HostedLanguageModel model) => models.TryGetValue(name, out model!);

    /// <summary>Adds the fine-tuned run (or saved model folder) <paramref name="runFolder"/> under <paramref name="name"/>.</summary>
    public HostedLanguageModel Add(string name, string runFolder)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException($"--adapter {name}={runFolder}: the name is empty");
        if (models.ContainsKey(name)) throw new ArgumentException($"--adapter {name}={runFolder}: a model named '{name}' is already served");
        string folder = LanguageModelFolder.Resolve(runFolder)
            ?? throw new ArgumentException($"--adapter {name}={runFolder}: not a fine-tuned language model (no {LanguageModelFolder.SpecFile} in it, its best/ or final/)");
        string trainedOn = LanguageModelFolder.BaseModel(folder);
        if (!SamePath(trainedOn, BasePath))
            throw new ArgumentException($"--adapter {name}={runFolder}: it was fine-tuned from {trainedOn}, the server's base is {BasePath}");
        var lm = LanguageModelFolder.Load(folder, dtype);
        lm.Model.Module.eval();
        var hosted = new HostedLanguageModel(name, lm, ShareBase(lm.Model), RunsAlone(lm.Model));
        models[name] = hosted;
        return hosted;
    }

    /// <summary>Points every parameter of <paramref name="model"/> whose name, shape, dtype and values are the base's at the base's tensor.</summary>
    int ShareBase(ICausalLanguageModel model)
    {
        var host = Base.Model.Module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        int shared = 0;
        using var noGrad = no_grad();
        foreach (var (name, parameter) in model.Module.named_parameters())
        {
            if (!host.TryGetValue(name, out var original) || ReferenceEquals(original, parameter)) continue;
            if (original.dtype != parameter.dtype || !original.shape.SequenceEqual(parameter.shape) || !original.allclose(parameter, rtol: 0, atol: 0)) continue;
            parameter.set_(original);
            shared++;
        }
        return shared;
    }

    static bool RunsAlone(ICausalLanguageModel model) => model is CausalLmModel { VirtualTokens: > 0 };

    static bool SamePath(string a, string b) =>
        string.Equals(Path.GetFullPath(a).TrimEnd(Path.DirectorySeparatorChar), Path.GetFullPath(b).TrimEnd(Path.DirectorySeparatorChar), StringComparison.Ordinal);

    /// <summary>A file's name without <c>.gguf</c>, or a folder's name.</summary>
    public static string DefaultName(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        string name = Path.GetFileName(full);
        return name.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? name[..^5] : name;
    }

    public void Dispose()
    {
        foreach (var model in models.Values.Where(m => !ReferenceEquals(m.Model, Base))) model.Model.Dispose();
        Base.Dispose();
    }
}
