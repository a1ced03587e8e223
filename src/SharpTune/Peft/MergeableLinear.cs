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

    /// <summary>New tensors holding the merged weight (in the layer's layout) and bias (out, null when it has none); the module is left as it is.</summary>
    (Tensor Weight, Tensor? Bias) MergedWeights();

    /// <summary>
    /// PEFT's <c>disable_adapter()</c>: while set, the layer computes its base alone (a preference run's reference model is
    /// the base under the adapter). A merged layer cannot leave its adapter out.
    /// </summary>
    bool AdapterDisabled { get; set; }
}

/// <summary>Turns an encoder built with LoRA or IA3 layers into a plain <see cref="BertModel"/> for export.</summary>
public static class MergedExport
{
    /// <summary>
    /// The state dict of the plain model (Hugging Face keys, no adapter keys) with every adapter
    /// merged. All tensors are new copies that the caller owns; the model is left as it is.
    /// </summary>
    public static Dictionary<string, Tensor> PlainStateDict(nn.Module model)
    {
        var (weights, merged) = Merge(model);
        var copied = new HashSet<string>(merged);
        foreach (string key in weights.Keys.Where(k => !copied.Contains(k)).ToList()) weights[key] = weights[key].detach().clone();
        return weights;
    }

    /// <summary>
    /// A new plain <see cref="BertModel"/> with the adapters merged, in eval mode: it saves as an ordinary
    /// Hugging Face model through <c>HuggingFaceCheckpoint.Save</c>.
    /// </summary>
    public static BertModel ToPlainModel(BertModel model)
    {
        var (weights, merged) = Merge(model); // unwrapped tensors are the model's own: only the merged ones are disposed
        var plain = new BertModel(model.Config, model.HasPooler);
        try
        {
            StateDictLoader.Load(plain, weights, "merged adapter model");
        }
        finally
        {
            foreach (string key in merged) weights[key].Dispose();
        }
        plain.eval();
        return plain;
    }

    /// <summary>Merged weight and bias for each wrapped layer (new tensors, listed in MergedKeys), the model's own tensors elsewhere.</summary>
    static (Dictionary<string, Tensor> Weights, List<string> MergedKeys) Merge(nn.Module model)
    {
        var wrapped = model.named_modules()
            .Where(m => m.module is IMergeableLinear)
            .ToDictionary(m => m.name, m => (IMergeableLinear)m.module);
        var weights = new Dictionary<string, Tensor>();
        var merged = new List<string>();
        using (no_grad())
        {
            foreach (var (path, layer) in wrapped)
            {
                var (weight, bias) = layer.MergedWeights();
                weights[$"{path}.weight"] = weight;
                merged.Add($"{path}.weight");
                if (bias is null) continue;
                weights[$"{path}.bias"] = bias;
                merged.Add($"{path}.bias");
            }
        }
        foreach (var (key, tensor) in model.state_dict())
        {
            // Inside a wrapped layer: weight and bias were merged above; lora_A, lora_B and ia3_l are dropped.
            if (!wrapped.Keys.Any(path => key.StartsWith(path + ".", StringComparison.Ordinal))) weights[key] = tensor;
        }
        return (weights, merged);
    }
}
