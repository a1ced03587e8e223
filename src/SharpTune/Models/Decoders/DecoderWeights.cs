using SharpTune.Checkpoints;
using SharpTune.Models.Decoders.Common;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders;

/// <summary>
/// Copies a checkpoint's tensors into a decoder, one at a time and straight into its parameters, so a lazy source (a GGUF
/// or safetensors file read chunk by chunk) never holds a second copy of any of them. Every tensor must land on a model
/// key of the same shape, checked before its data is read, and every model key must be filled; errors name the source
/// and the key.
/// </summary>
public static class DecoderWeights
{
    /// <summary>Tensors already in memory; the caller keeps ownership of them.</summary>
    public static void Load(ICausalLanguageModel model, IDecoderFamily family, IDecoderConfig config,
        IEnumerable<(string Key, Tensor Value)> tensors, string source) =>
        Load(model, family, config, tensors.Select(t => (ICheckpointTensor)new InMemoryCheckpointTensor(t.Key, t.Value)), source);

    public static void Load(ICausalLanguageModel model, IDecoderFamily family, IDecoderConfig config,
        IEnumerable<ICheckpointTensor> tensors, string source)
    {
        var target = model.Module.state_dict();
        var filled = new HashSet<string>(StringComparer.Ordinal);
        using (no_grad())
        {
            foreach (var value in tensors)
            {
                string raw = value.Name;
                string? key = family.MapCheckpointKey(raw, config);
                if (key is null) continue;
                string named = key == raw ? key : $"{raw} (as {key})";
                if (!target.TryGetValue(key, out var destination))
                    throw new InvalidDataException(
                        $"{source}: tensor {named} is not a weight of a {family.Name} model with this config (a checkpoint of another architecture or config?)");
                if (!filled.Add(key)) throw new InvalidDataException($"{source}: tensor {named} appears twice");
                if (!destination.shape.SequenceEqual(value.Shape))
                    throw new InvalidDataException(
                        $"{source}: tensor {named} has shape [{string.Join(", ", value.Shape)}], the config asks for [{string.Join(", ", destination.shape)}]");
                if (!value.IsFloatingPoint)
                    throw new InvalidDataException($"{source}: tensor {named} is not floating-point; expected a floating-point type");
                value.ReadInto(destination);
            }
        }
        // A wrapped Linear's own weights (lora_A.weight, ia3_l, ...) are not in a pretrained checkpoint; its weight and bias are.
        var sites = model.Shape.LinearSites.Select(site => site.Path).ToHashSet(StringComparer.Ordinal);
        bool AdapterOwn(string key)
        {
            for (int cut = key.IndexOf('.'); cut > 0; cut = key.IndexOf('.', cut + 1))
                if (sites.Contains(key[..cut])) return key[(cut + 1)..] is not ("weight" or "bias");
            return false;
        }
        var missing = target.Keys.Where(k => !filled.Contains(k) && !AdapterOwn(k)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException(
                $"{source}: {missing.Count} weight(s) of the {family.Name} model missing: {string.Join(", ", missing.Take(8))}{(missing.Count > 8 ? ", ..." : "")}");
    }
}
