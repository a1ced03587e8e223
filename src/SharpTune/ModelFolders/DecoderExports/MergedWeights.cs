using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>
/// A model's weights with its adapters merged (<see cref="IMergeableLinear.MergedWeights"/>) under the plain model's keys,
/// without copying what needs no merging, so a large model is not held twice while it is written: the merged weight and
/// bias of each wrapped layer are new tensors freed on <see cref="Dispose"/>; every other tensor is the model's own.
/// (<see cref="MergedExport.PlainStateDict"/> is the same as copies the caller owns.)
/// </summary>
sealed class MergedWeights : IDisposable
{
    readonly List<Tensor> owned = [];

    MergedWeights(Dictionary<string, Tensor> tensors, int mergedLayers)
    {
        Tensors = tensors;
        MergedLayers = mergedLayers;
    }

    /// <summary>Plain Hugging Face keys, in the model's state-dict order; adapter tensors (lora_A, lora_B, ia3_l) dropped.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors { get; }

    /// <summary>How many layers had an adapter merged.</summary>
    public int MergedLayers { get; }

    public static MergedWeights Of(nn.Module model)
    {
        var wrapped = model.named_modules().Where(m => m.module is IMergeableLinear).ToDictionary(m => m.name, m => (IMergeableLinear)m.module);
        var tensors = new Dictionary<string, Tensor>();
        var result = new MergedWeights(tensors, wrapped.Count);
        try
        {
            var merged = new Dictionary<string, Tensor>();
            using (no_grad())
            {
                foreach (var (path, layer) in wrapped)
                {
                    var (weight, bias) = layer.MergedWeights();
                    result.owned.Add(merged[$"{path}.weight"] = weight);
                    if (bias is not null) result.owned.Add(merged[$"{path}.bias"] = bias);
                }
            }
            foreach (var (key, tensor) in model.state_dict())
            {
                if (merged.TryGetValue(key, out var replacement)) tensors[key] = replacement;
                else if (!wrapped.Keys.Any(path => key.StartsWith(path + ".", StringComparison.Ordinal))) tensors[key] = tensor;
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
