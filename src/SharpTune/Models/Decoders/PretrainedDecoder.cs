using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Models.Decoders.Common;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders;

/// <summary>
/// Loads and saves decoder language models in Hugging Face's folder layout (<c>config.json</c> and
/// <c>model.safetensors</c>, or shards with their index), picking the family by <c>model_type</c>.
/// </summary>
/// <remarks>
/// dtype: the weights are held in the dtype asked for and the forward pass computes in it, as transformers does with
/// <c>torch_dtype=torch.bfloat16</c>: RMSNorm's statistics and the rotary angles are computed in float32 and cast back,
/// and the logits are returned in float32.
/// </remarks>
public static class PretrainedDecoder
{
    static readonly ScalarType[] Dtypes = [ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16];

    /// <summary>Loads the model of a Hugging Face folder; every weight is checked against the config by key and shape.</summary>
    public static ICausalLanguageModel Load(string folder, ScalarType dtype = ScalarType.Float32, DecoderLinearFactory? linears = null)
    {
        string configPath = Path.Combine(folder, HuggingFaceCheckpoint.ConfigFile);
        if (!File.Exists(configPath))
            throw new FileNotFoundException($"{folder}: not a model folder (no {HuggingFaceCheckpoint.ConfigFile})", configPath);
        return Load(folder, ReadConfig(configPath), dtype, linears);
    }

    /// <summary>Loads the model of a Hugging Face folder whose <c>config.json</c> the caller has already read.</summary>
    public static ICausalLanguageModel Load(string folder, JsonObject config, ScalarType dtype = ScalarType.Float32, DecoderLinearFactory? linears = null)
    {
        string configPath = Path.Combine(folder, HuggingFaceCheckpoint.ConfigFile);
        var family = DecoderFamilies.ForConfig(config, configPath);
        var parsed = family.ParseConfig(config, configPath); // a bad config fails before the weights are read
        // The model is built (and cast) before the file is read, so the peak holds the model once in fp32, not also the file.
        return Build(family, parsed, dtype, linears, model =>
        {
            var (stateDict, source) = HuggingFaceCheckpoint.LoadStateDict(folder);
            try
            {
                DecoderWeights.Load(model, family, parsed, stateDict.Select(kv => (kv.Key, kv.Value)), source);
            }
            finally
            {
                foreach (var tensor in stateDict.Values) tensor.Dispose();
            }
        });
    }

    /// <summary>
    /// A model from a Hugging Face config and tensors with Hugging Face's names (what the GGUF reader yields). Each
    /// tensor is copied into the model before the next is asked for; the caller keeps ownership of them.
    /// </summary>
    public static ICausalLanguageModel FromStateDict(JsonObject config, IEnumerable<(string Key, Tensor Value)> tensors,
        ScalarType dtype = ScalarType.Float32, string source = "state dict", DecoderLinearFactory? linears = null)
    {
        var family = DecoderFamilies.ForConfig(config, source);
        var parsed = family.ParseConfig(config, source);
        return Build(family, parsed, dtype, linears, model => DecoderWeights.Load(model, family, parsed, tensors, source));
    }

    /// <summary>A freshly initialised model (HF's initialisation) for a Hugging Face config, in training mode.</summary>
    public static ICausalLanguageModel Create(JsonObject config, ScalarType dtype = ScalarType.Float32, DecoderLinearFactory? linears = null)
    {
        var family = DecoderFamilies.ForConfig(config);
        var parsed = family.ParseConfig(config, "config");
        var model = family.Build(parsed, linears);
        DecoderInit.Apply(model.Module, parsed.InitializerRange); // only here: loaded weights overwrite it anyway
        model.Module.to(CheckDtype(dtype));
        return model;
    }

    /// <summary>Writes <c>config.json</c> and <c>model.safetensors</c> as transformers saves them (a tied head is not written).</summary>
    public static void Save(this ICausalLanguageModel model, string folder)
    {
        Directory.CreateDirectory(folder);
        var tensors = model.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        SafeTensors.Save(Path.Combine(folder, HuggingFaceCheckpoint.WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var config = model.ToConfigJson();
        config["architectures"] ??= new JsonArray(model.GetType().Name);
        var dtype = tensors.Values.FirstOrDefault(t => t.is_floating_point())?.dtype ?? ScalarType.Float32;
        config["torch_dtype"] = dtype switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", _ => "float32" };
        AtomicFile.WriteAllText(Path.Combine(folder, HuggingFaceCheckpoint.ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>Reads a <c>config.json</c> as a JSON object; errors name the file.</summary>
    public static JsonObject ReadConfig(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }
    }

    static ICausalLanguageModel Build(IDecoderFamily family, IDecoderConfig config, ScalarType dtype, DecoderLinearFactory? linears,
        Action<ICausalLanguageModel> loadWeights)
    {
        CheckDtype(dtype);
        var model = family.Build(config, linears);
        try
        {
            model.Module.to(dtype);
            loadWeights(model);
            model.Module.eval();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    static ScalarType CheckDtype(ScalarType dtype) => Dtypes.Contains(dtype) ? dtype
        : throw new ArgumentException($"dtype {dtype} is not supported for decoder weights ({string.Join(", ", Dtypes)})");
}
