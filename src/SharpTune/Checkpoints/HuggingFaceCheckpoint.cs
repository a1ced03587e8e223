using System.Collections;
using System.Text.Json;
using static TorchSharp.torch;

namespace SharpTune.Checkpoints;

/// <summary>
/// Reads and writes models in Hugging Face's folder layout: <c>config.json</c>, the weights
/// (<c>model.safetensors</c>, sharded <c>model-0000x-of-0000n.safetensors</c> with its index, or
/// <c>pytorch_model.bin</c>), <c>vocab.txt</c> and <c>tokenizer_config.json</c>.
/// </summary>
public static class HuggingFaceCheckpoint
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
    public const string ShardIndexFile = "model.safetensors.index.json";
    public const string PickleWeightsFile = "pytorch_model.bin";
    public const string VocabFile = "vocab.txt";
    public const string TokenizerConfigFile = "tokenizer_config.json";

    /// <summary>True when <paramref name="folder"/> looks like a Hugging Face model folder.</summary>
    public static bool IsModelFolder(string folder) => File.Exists(Path.Combine(folder, ConfigFile));

    /// <summary>Loads the raw state dict of a model folder and says which file(s) it came from.</summary>
    public static (Dictionary<string, Tensor> StateDict, string Source) LoadStateDict(string folder)
    {
        string single = Path.Combine(folder, WeightsFile);
        if (File.Exists(single)) return (SafeTensors.Load(single), single);

        string index = Path.Combine(folder, ShardIndexFile);
        if (File.Exists(index)) return (LoadShards(folder, index), index);

        string pickle = Path.Combine(folder, PickleWeightsFile);
        if (File.Exists(pickle)) return (LoadPickle(pickle), pickle);

        throw new FileNotFoundException(
            $"{folder}: no weights found; expected {WeightsFile}, {ShardIndexFile} with its shards, or {PickleWeightsFile}");
    }

    /// <summary>
    /// The state dict of a model folder as tensors read only when asked (<see cref="ICheckpointTensor"/>), so a model can be
    /// filled one tensor at a time; a PyTorch pickle, which cannot be read in parts, is loaded whole and handed over as it is.
    /// </summary>
    public static (IReadOnlyList<ICheckpointTensor> Tensors, string Source) OpenStateDict(string folder)
    {
        string single = Path.Combine(folder, WeightsFile);
        if (File.Exists(single)) return (SafeTensors.Open(single), single);

        string index = Path.Combine(folder, ShardIndexFile);
        if (File.Exists(index))
        {
            var tensors = new List<ICheckpointTensor>();
            var weightMap = ReadShardIndex(folder, index);
            foreach (var (shard, shardPath) in Shards(folder, index, weightMap))
                tensors.AddRange(SafeTensors.Open(shardPath, n => weightMap.TryGetValue(n, out var s) && s == shard));
            var found = tensors.Select(t => t.Name).ToHashSet();
            CheckShardsHoldEverything(index, weightMap, found);
            return (tensors, index);
        }

        string pickle = Path.Combine(folder, PickleWeightsFile);
        if (File.Exists(pickle)) return (LoadPickle(pickle).Select(kv => (ICheckpointTensor)new InMemoryCheckpointTensor(kv.Key, kv.Value, readOnce: true)).ToList(), pickle);

        throw new FileNotFoundException(
            $"{folder}: no weights found; expected {WeightsFile}, {ShardIndexFile} with its shards, or {PickleWeightsFile}");
    }

    static Dictionary<string, Tensor> LoadShards(string folder, string indexPath)
    {
        var weightMap = ReadShardIndex(folder, indexPath);
        var result = new Dictionary<string, Tensor>();
        foreach (var (shard, shardPath) in Shards(folder, indexPath, weightMap))
            foreach (var (name, tensor) in SafeTensors.Load(shardPath, n => weightMap.TryGetValue(n, out var s) && s == shard))
                result[name] = tensor;
        CheckShardsHoldEverything(indexPath, weightMap, result.Keys.ToHashSet());
        return result;
    }

    static Dictionary<string, string> ReadShardIndex(string folder, string indexPath)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
            return doc.RootElement.GetProperty("weight_map").EnumerateObject()
                .ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException($"{indexPath}: not a valid shard index ({e.Message})", e);
        }
    }

    /// <summary>Each shard the index names, with its path; a name outside the folder or a missing file is an error.</summary>
    static IEnumerable<(string Shard, string Path)> Shards(string folder, string indexPath, Dictionary<string, string> weightMap)
    {
        foreach (var shard in weightMap.Values.Distinct())
        {
            if (shard.Contains('/') || shard.Contains('\\') || shard.Contains(".."))
                throw new InvalidDataException($"{indexPath}: shard name '{shard}' must be a file in the same folder");
            string shardPath = Path.Combine(folder, shard);
            if (!File.Exists(shardPath)) throw new FileNotFoundException($"{indexPath} names shard {shard}, which is missing", shardPath);
            yield return (shard, shardPath);
        }
    }

    static void CheckShardsHoldEverything(string indexPath, Dictionary<string, string> weightMap, HashSet<string> found)
    {
        var missing = weightMap.Keys.Where(k => !found.Contains(k)).Take(5).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{indexPath}: tensors listed in the index are absent from their shards: {string.Join(", ", missing)}");
    }

    static Dictionary<string, Tensor> LoadPickle(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            Hashtable table = TorchSharp.PyBridge.PyTorchUnpickler.UnpickleStateDict(stream);
            var result = new Dictionary<string, Tensor>();
            foreach (DictionaryEntry entry in table)
                if (entry.Key is string name && entry.Value is Tensor tensor) result[name] = tensor;
            return result;
        }
        catch (Exception e) when (e is not FileNotFoundException)
        {
            throw new InvalidDataException($"{path}: could not read the PyTorch pickle ({e.Message})", e);
        }
    }

    /// <summary>Reads <c>do_lower_case</c> from the folder's tokenizer config; uncased when absent, as HF's BertTokenizer.</summary>
    public static bool ReadLowerCase(string folder)
    {
        string path = Path.Combine(folder, TokenizerConfigFile);
        if (!File.Exists(path)) return true;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return !doc.RootElement.TryGetProperty("do_lower_case", out var value) || value.ValueKind != JsonValueKind.False;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }
    }
}
