using System.Text.Json.Nodes;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Common;

namespace SharpTune.Models.Decoders.Gguf;

/// <summary>
/// A decoder family's GGUF form, one table read and written alike (as gguf-py's <c>tensor_mapping.py</c>): its
/// <c>general.architecture</c>, the metadata keys and the Hugging Face config fields they carry, and the tensors with
/// their names and transforms. The reader builds the config from the metadata, the family parses it, and the tensors
/// follow from the parsed config; the writer starts from the model's parsed config. Either way the same rows are used.
/// </summary>
public interface IGgufTable
{
    /// <summary>The <c>general.architecture</c> this family reads and writes.</summary>
    string Architecture { get; }

    /// <summary>A Hugging Face <c>config.json</c> equivalent of <paramref name="file"/>'s metadata (validated by the family afterwards).</summary>
    JsonObject ReadConfig(GgufFile file);

    /// <summary>The <c>{arch}.*</c> keys for <paramref name="config"/>, typed as llama.cpp reads them.</summary>
    IReadOnlyList<KeyValuePair<string, object>> Metadata(IDecoderConfig config);

    /// <summary>Every weight of the plain model, in the converter's order, for <paramref name="config"/>.</summary>
    IReadOnlyList<GgufTensorMapping> Tensors(IDecoderConfig config);

    /// <summary>Tensors llama.cpp wants that the model holds as settings (Llama 3's <c>rope_freqs.weight</c>), always F32.</summary>
    IReadOnlyList<(string Name, float[] Values)> ExtraTensors(IDecoderConfig config);
}

/// <summary>What every family's table reads the same way.</summary>
public static class GgufTables
{
    /// <summary>vocab_size from <c>{arch}.vocab_size</c>, else the tokenizer's token count, else token_embd's rows.</summary>
    public static long Vocab(GgufFile f, string arch)
    {
        string key = $"{arch}.vocab_size";
        if (f.HasKey(key))
        {
            long value = f.GetInt(key);
            if (value <= 0 || value > int.MaxValue) throw new InvalidDataException($"{f.Path}: metadata '{key}' = {value}, expected a positive size");
            return value;
        }
        if (f.TryGetArray<string>("tokenizer.ggml.tokens", out var tokens) && tokens.Length > 0) return tokens.Length;
        return f.GetTensor("token_embd.weight").Shape[0];
    }

    /// <summary>bos/eos token ids from the tokenizer's metadata.</summary>
    public static void AddTokenIds(GgufFile f, JsonObject config)
    {
        if (f.TryGetInt("tokenizer.ggml.bos_token_id", out long bos)) config["bos_token_id"] = bos;
        if (f.TryGetInt("tokenizer.ggml.eos_token_id", out long eos)) config["eos_token_id"] = eos;
    }

    /// <summary>Every key of <paramref name="keys"/> read into <paramref name="config"/>.</summary>
    public static void Read<TConfig>(this IEnumerable<GgufKey<TConfig>> keys, GgufFile f, string arch, JsonObject config)
    {
        foreach (var key in keys) key.Read(f, arch, config);
    }

    /// <summary>Every key of <paramref name="keys"/> that <paramref name="config"/> writes.</summary>
    public static List<KeyValuePair<string, object>> Write<TConfig>(this IEnumerable<GgufKey<TConfig>> keys, TConfig config, string arch) =>
        keys.Select(k => k.Written(config, arch)).OfType<KeyValuePair<string, object>>().ToList();
}
