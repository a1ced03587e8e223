using SharpTune.ModelFolders;
using SharpTune.Peft;
using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Inference;

/// <summary>
/// One pretrained base model in memory with any number of adapters over it, chosen per call. Each adapter
/// gets its own task model whose frozen base weights are the host's tensors themselves (shared storage, not
/// copies), so adding an adapter costs only its own parameters and never reloads the base.
/// </summary>
public sealed class AdapterHost : IDisposable
{
    readonly PretrainedEncoder pretrained;
    readonly Dictionary<string, string> baseTensors;
    readonly Dictionary<string, LoadedTaskModel> adapters = new(StringComparer.Ordinal);

    public AdapterHost(string baseModel)
    {
        BaseModel = baseModel;
        pretrained = PretrainedEncoder.Load(baseModel);
        baseTensors = pretrained.Model.state_dict().Keys.ToDictionary(k => k, k => k);
    }

    public string BaseModel { get; }

    public IReadOnlyCollection<string> Names => adapters.Keys;

    /// <summary>Adds the adapter of a run or model folder saved by a parameter-efficient run over the same base model.</summary>
    public void Add(string name, string modelFolder)
    {
        if (adapters.ContainsKey(name)) throw new ArgumentException($"an adapter named '{name}' is already loaded");
        string folder = TaskModelFolder.Resolve(modelFolder);
        var spec = TaskSpec.Load(folder);
        string adapterFolder = Path.Combine(folder, TaskModelFolder.AdapterFolder);
        if (!Directory.Exists(adapterFolder))
            throw new ArgumentException($"{folder}: not an adapter (a fully fine-tuned model carries its own base; load it with --model)");
        if (!string.Equals(Path.GetFullPath(spec.BaseModel), Path.GetFullPath(BaseModel), StringComparison.Ordinal) && spec.BaseModel != BaseModel)
            throw new ArgumentException($"{folder}: the adapter was trained on '{spec.BaseModel}', the host holds '{BaseModel}'");

        var labelsPath = Path.Combine(folder, TaskModelFolder.LabelsFile);
        var labels = File.Exists(labelsPath) ? Data.LabelMap.Load(labelsPath) : null;
        var model = TaskModelFolder.BuildWithAdapter(adapterFolder, spec, pretrained, pretrained.CreateTokenizer(BaseModel));
        ShareFrozenBase(model);
        adapters[name] = new LoadedTaskModel(model, pretrained.Vocab, pretrained.LowerCase, labels, spec);
    }

    /// <summary>The adapter called <paramref name="name"/>.</summary>
    public LoadedTaskModel Get(string name) =>
        adapters.TryGetValue(name, out var adapter)
            ? adapter
            : throw new ArgumentException($"no adapter named '{name}'; loaded: {string.Join(", ", adapters.Keys)}");

    /// <summary>Points every frozen base parameter of <paramref name="model"/> at the host's tensor, dropping its copy.</summary>
    void ShareFrozenBase(TaskModel model)
    {
        var host = pretrained.Model.state_dict();
        using var noGrad = no_grad();
        foreach (var (name, parameter) in model.Encoder.named_parameters())
        {
            if (parameter.requires_grad || !baseTensors.ContainsKey(name)) continue; // adapter-owned (BitFit biases, LoRA A/B)
            parameter.set_(host[name]);
        }
    }

    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> use the same memory.</summary>
    public static bool SharesStorage(Tensor a, Tensor b) => a.dtype == ScalarType.Float32 && b.dtype == ScalarType.Float32
        && a.storage<float>().data_ptr() == b.storage<float>().data_ptr();

    public void Dispose()
    {
        foreach (var adapter in adapters.Values) adapter.Dispose();
        pretrained.Dispose();
    }
}
