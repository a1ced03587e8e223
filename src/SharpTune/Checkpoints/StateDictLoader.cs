using static TorchSharp.torch;

namespace SharpTune.Checkpoints;

/// <summary>Copies named tensors into a module's parameters and buffers, checking every key and shape.</summary>
public static class StateDictLoader
{
    /// <summary>
    /// Copies <paramref name="source"/> into <paramref name="module"/>. Every key of the module must be
    /// present with the same shape (names: <paramref name="sourceName"/>); keys the module lacks are
    /// returned so the caller can report them.
    /// </summary>
    public static IReadOnlyList<string> Load(nn.Module module, IReadOnlyDictionary<string, Tensor> source, string sourceName,
        Func<string, bool>? optional = null)
    {
        var target = module.state_dict();
        var missing = target.Keys.Where(k => !source.ContainsKey(k) && !(optional?.Invoke(k) ?? false)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException(
                $"{sourceName}: {missing.Count} weight(s) missing: {string.Join(", ", missing.Take(8))}{(missing.Count > 8 ? ", ..." : "")}");
        using (no_grad())
        {
            foreach (var (key, destination) in target)
            {
                if (!source.TryGetValue(key, out var value)) continue;
                if (!destination.shape.SequenceEqual(value.shape))
                    throw new InvalidDataException(
                        $"{sourceName}: weight {key} has shape [{string.Join(", ", value.shape)}], the model expects [{string.Join(", ", destination.shape)}]");
                destination.copy_(value);
            }
        }
        return source.Keys.Where(k => !target.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
    }
}
