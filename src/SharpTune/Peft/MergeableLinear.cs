using SharpTune.Checkpoints;
using SharpTune.Models.Bert;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// A wrapped Linear whose adapter folds into its own <c>weight</c> (out, in) and <c>bias</c> (out): LoRA adds
/// <c>(alpha/r) B A</c>, IA3 scales rows or columns. Merged, the forward pass is a plain Linear.
/// </summary>
public interface IMergeableLinear
{
    bool IsMerged { get; }

    /// <summary>Folds the adapter into <c>weight</c>/<c>bias</c> in place; the forward pass then skips the adapter path.</summary>
    void Merge();

    /// <summary>Takes the adapter back out of <c>weight</c>/<c>bias</c>.</summary>
    void Unmerge();

    /// <summary>New tensors holding the merged weight (out, in) and bias (out), null for a layer without bias; the module is left as it is.</summary>
    (Tensor Weight, Tensor? Bias) MergedWeights();
}

/// <summary>
/// Turns a model built with LoRA or IA3 layers (any module: a BERT encoder, a decoder) into plain weights for export:
/// each <see cref="IMergeableLinear"/> becomes its merged <c>weight</c> and <c>bias</c> under its own path, and the
/// adapter's own tensors (<c>lora_A</c>, <c>lora_B</c>, <c>ia3_l</c>) are dropped.
/// </summary>
public static class MergedExport
{
    /// <summary>
    /// The state dict of the plain model (Hugging Face keys, no adapter keys) with every adapter merged. All tensors
    /// are new copies that the caller owns; the model is left as it is.
    /// </summary>
    public static Dictionary<string, Tensor> PlainStateDict(nn.Module model)
    {
        using var merged = MergedStateDict.Of(model);
        return merged.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
    }

    /// <summary>
    /// A new plain <see cref="BertModel"/> with the adapters merged, in eval mode: it saves as an ordinary
    /// Hugging Face model through <c>HuggingFaceCheckpoint.Save</c>.
    /// </summary>
    public static BertModel ToPlainModel(BertModel model)
    {
        using var merged = MergedStateDict.Of(model);
        var plain = new BertModel(model.Config, model.HasPooler);
        StateDictLoader.Load(plain, merged.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value), "merged adapter model");
        plain.eval();
        return plain;
    }
}

/// <summary>
/// A model's weights with its adapters merged, without copying what needs no merging: the merged weight and bias of
/// each wrapped layer are new tensors, owned here and freed on <see cref="Dispose"/>; every other tensor is the model's
/// own (so keep the model alive while this is used, and do not change it in between).
/// </summary>
public sealed class MergedStateDict : IDisposable
{
    readonly List<Tensor> owned = [];

    MergedStateDict(Dictionary<string, Tensor> tensors, IReadOnlyList<string> mergedLayers)
    {
        Tensors = tensors;
        MergedLayers = mergedLayers;
    }

    /// <summary>Plain Hugging Face keys, in the model's state-dict order.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors { get; }

    /// <summary>Module paths of the layers whose adapters were merged.</summary>
    public IReadOnlyList<string> MergedLayers { get; }

    public static MergedStateDict Of(nn.Module model)
    {
        var wrapped = model.named_modules()
            .Where(m => m.module is IMergeableLinear)
            .ToDictionary(m => m.name, m => (IMergeableLinear)m.module);
        var merged = new Dictionary<string, Tensor>();
        var result = new MergedStateDict(new Dictionary<string, Tensor>(), wrapped.Keys.ToList());
        var tensors = (Dictionary<string, Tensor>)result.Tensors;
        try
        {
            using (no_grad())
            {
                foreach (var (path, layer) in wrapped)
                {
                    var (weight, bias) = layer.MergedWeights();
                    result.owned.Add(weight);
                    merged[$"{path}.weight"] = weight;
                    if (bias is not null)
                    {
                        result.owned.Add(bias);
                        merged[$"{path}.bias"] = bias;
                    }
                }
            }
            foreach (var (key, tensor) in model.state_dict())
            {
                int dot = key.LastIndexOf('.');
                string parent = dot < 0 ? "" : key[..dot];
                // A wrapped layer's weight and bias come merged; its adapter tensors (lora_A.weight, ia3_l) are dropped.
                if (merged.TryGetValue(key, out var replacement)) tensors[key] = replacement;
                else if (!wrapped.Keys.Any(path => key.StartsWith(path + ".", StringComparison.Ordinal))) tensors[key] = tensor;
                else if (wrapped.ContainsKey(parent) && key[(dot + 1)..] is "weight" or "bias")
                    throw new InvalidOperationException($"{key}: {wrapped[parent].GetType().Name} gave no merged tensor for it");
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var tensor in owned) tensor.Dispose();
        owned.Clear();
    }
}
