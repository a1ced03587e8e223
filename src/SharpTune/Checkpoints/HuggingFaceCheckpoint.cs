using System.Collections;
using System.Text.Json;
using SharpTune.Models.Bert;
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

    static Dictionary<string, Tensor> LoadShards(string folder, string indexPath)
    {
        Dictionary<string, string> weightMap;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
            weightMap = doc.RootElement.GetProperty("weight_map").EnumerateObject()
                .ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException($"{indexPath}: not a valid shard index ({e.Message})", e);
        }
        var result = new Dictionary<string, Tensor>();
        foreach (var shard in weightMap.Values.Distinct())
        {
            if (shard.Contains('/') || shard.Contains('\\') || shard.Contains(".."))
                throw new InvalidDataException($"{indexPath}: shard name '{shard}' must be a file in the same folder");
            string shardPath = Path.Combine(folder, shard);
            if (!File.Exists(shardPath)) throw new FileNotFoundException($"{indexPath} names shard {shard}, which is missing", shardPath);
            foreach (var (name, tensor) in SafeTensors.Load(shardPath, n => weightMap.TryGetValue(n, out var s) && s == shard))
                result[name] = tensor;
        }
        var missing = weightMap.Keys.Where(k => !result.ContainsKey(k)).Take(5).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{indexPath}: tensors listed in the index are absent from their shards: {string.Join(", ", missing)}");
        return result;
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

    /// <summary>
    /// Maps a checkpoint's keys onto <c>BertModel</c> keys: drops the <c>bert.</c> prefix of task models,
    /// renames the old <c>gamma</c>/<c>beta</c> LayerNorm names, and separates what a plain encoder does
    /// not use (MLM or task heads, the <c>position_ids</c> buffer), which is returned so it can be reported
    /// or, for a task head, loaded by the head itself.
    /// </summary>
    public static (Dictionary<string, Tensor> Encoder, Dictionary<string, Tensor> Other) SplitEncoderKeys(IReadOnlyDictionary<string, Tensor> stateDict)
    {
        var encoder = new Dictionary<string, Tensor>();
        var other = new Dictionary<string, Tensor>();
        foreach (var (raw, tensor) in stateDict)
        {
            string key = raw.StartsWith("bert.", StringComparison.Ordinal) ? raw["bert.".Length..] : raw;
            key = key.Replace("LayerNorm.gamma", "LayerNorm.weight").Replace("LayerNorm.beta", "LayerNorm.bias");
            bool isEncoder = (key.StartsWith("embeddings.", StringComparison.Ordinal) && !key.EndsWith("position_ids", StringComparison.Ordinal))
                || key.StartsWith("encoder.", StringComparison.Ordinal) || key.StartsWith("pooler.", StringComparison.Ordinal);
            (isEncoder ? encoder : other)[isEncoder ? key : raw] = tensor;
        }
        return (encoder, other);
    }

    /// <summary>Writes <paramref name="model"/> with its vocabulary as a folder that transformers' <c>AutoModel.from_pretrained</c> loads.</summary>
    public static void Save(string folder, BertModel model, byte[] vocab, bool lowerCase,
        IReadOnlyDictionary<string, Tensor>? extraTensors = null, BertConfig? config = null)
    {
        Directory.CreateDirectory(folder);
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (key, tensor) in model.state_dict()) tensors[key] = tensor;
        if (extraTensors is not null)
            foreach (var (key, tensor) in extraTensors) tensors[key] = tensor;
        SafeTensors.Save(Path.Combine(folder, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });

        var saved = (config ?? model.Config) with { Architectures = (config ?? model.Config).Architectures ?? ["BertModel"] };
        AtomicFile.WriteAllText(Path.Combine(folder, ConfigFile), saved.ToJson() + "\n");
        File.WriteAllBytes(Path.Combine(folder, VocabFile), vocab);
        var tokenizerConfig = new Dictionary<string, object>
        {
            ["tokenizer_class"] = "BertTokenizer",
            ["do_lower_case"] = lowerCase,
            ["strip_accents"] = lowerCase ? null! : false,
            ["model_max_length"] = model.Config.MaxPositionEmbeddings,
        };
        AtomicFile.WriteAllText(Path.Combine(folder, TokenizerConfigFile),
            JsonSerializer.Serialize(tokenizerConfig, new JsonSerializerOptions { WriteIndented = true }) + "\n");
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
