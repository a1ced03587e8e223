using SharpTune.Models.Quantized;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>
/// A model's weights with its adapters merged (<see cref="IMergeableLinear.MergedWeights"/>) under the plain model's keys,
/// each made only when asked, so a writer holds one tensor at a time and a large model is never held twice.
/// (<see cref="MergedExport.PlainStateDict"/> gives them all at once, as copies.)
/// </summary>
static class MergedWeights
{
    /// <summary>
    /// The weights, each made only when asked (a new tensor the caller disposes), so a writer can merge, convert and
    /// write one tensor at a time: a model whose matrices are stored blocks is never dense whole. Wrapped layers give
    /// their merged weight and bias; stored layers, embeddings and heads their blocks dequantized to float32; everything
    /// else a copy of the model's tensor.
    /// </summary>
    public static Dictionary<string, Func<Tensor>> Lazy(nn.Module model)
    {
        var result = new Dictionary<string, Func<Tensor>>(StringComparer.Ordinal);
        var wrapped = model.named_modules().Where(m => m.module is IMergeableLinear).ToDictionary(m => m.name, m => (IMergeableLinear)m.module);
        var keys = model.state_dict();
        foreach (var (path, layer) in wrapped)
        {
            result[$"{path}.weight"] = () => Merged(layer, weight: true);
            if (keys.ContainsKey($"{path}.bias")) result[$"{path}.bias"] = () => Merged(layer, weight: false);
        }
        foreach (var (name, module) in model.named_modules())
        {
            var stored = module switch { StoredLinear linear => linear.Weight, StoredEmbedding embedding => embedding.Weight, _ => null };
            if (stored is not null) result[$"{name}.weight"] = () => QuantizedOps.Dequantize(stored);
        }
        foreach (var (key, tensor) in keys)
            if (!result.ContainsKey(key) && !wrapped.Keys.Any(path => key.StartsWith(path + ".", StringComparison.Ordinal)))
                result[key] = () => tensor.detach().clone();
        return result;
    }

    static Tensor Merged(IMergeableLinear layer, bool weight)
    {
        using var noGrad = no_grad();
        var (w, b) = layer.MergedWeights();
        if (weight)
        {
            b?.Dispose();
            return w;
        }
        w.Dispose();
        return b!;
    }
}
