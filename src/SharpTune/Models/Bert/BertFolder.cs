using System.Text.Json;
using SharpTune.Checkpoints;
using static TorchSharp.torch;

namespace SharpTune.Models.Bert;

/// <summary>A BERT encoder as a Hugging Face model folder: its keys in checkpoints, and saving it with its vocabulary.</summary>
public static class BertFolder
{
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
        SafeTensors.Save(Path.Combine(folder, HuggingFaceCheckpoint.WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });

        var saved = (config ?? model.Config) with { Architectures = (config ?? model.Config).Architectures ?? ["BertModel"] };
        AtomicFile.WriteAllText(Path.Combine(folder, HuggingFaceCheckpoint.ConfigFile), saved.ToJson() + "\n");
        File.WriteAllBytes(Path.Combine(folder, HuggingFaceCheckpoint.VocabFile), vocab);
        var tokenizerConfig = new Dictionary<string, object>
        {
            ["tokenizer_class"] = "BertTokenizer",
            ["do_lower_case"] = lowerCase,
            ["strip_accents"] = lowerCase ? null! : false,
            ["model_max_length"] = model.Config.MaxPositionEmbeddings,
        };
        AtomicFile.WriteAllText(Path.Combine(folder, HuggingFaceCheckpoint.TokenizerConfigFile),
            JsonSerializer.Serialize(tokenizerConfig, new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
