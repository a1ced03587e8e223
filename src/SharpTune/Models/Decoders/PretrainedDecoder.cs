using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Quantized;
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
    public static ICausalLanguageModel Load(string folder, ScalarType dtype = ScalarType.Float32, LinearFactory? linears = null)
    {
        string configPath = Path.Combine(folder, HuggingFaceCheckpoint.ConfigFile);
        if (!File.Exists(configPath))
            throw new FileNotFoundException($"{folder}: not a model folder (no {HuggingFaceCheckpoint.ConfigFile})", configPath);
        return Load(folder, ReadConfig(configPath), dtype, linears);
    }

    /// <summary>Loads the model of a Hugging Face folder whose <c>config.json</c> the caller has already read.</summary>
    public static ICausalLanguageModel Load(string folder, JsonObject config, ScalarType dtype = ScalarType.Float32, LinearFactory? linears = null)
    {
        string configPath = Path.Combine(folder, HuggingFaceCheckpoint.ConfigFile);
        var family = DecoderFamilies.ForConfig(config, configPath);
        var parsed = family.ParseConfig(config, configPath); // a bad config fails before the weights are read
        var (tensors, source) = HuggingFaceCheckpoint.OpenStateDict(folder);
        return Build(family, parsed, dtype, linears, model => DecoderWeights.Load(model, family, parsed, tensors, source));
    }

    /// <summary>
    /// A model from a Hugging Face config and tensors with Hugging Face's names. Each tensor is copied into the model
    /// before the next is asked for; the caller keeps ownership of them.
    /// </summary>
    public static ICausalLanguageModel FromStateDict(JsonObject config, IEnumerable<(string Key, Tensor Value)> tensors,
        ScalarType dtype = ScalarType.Float32, string source = "state dict", LinearFactory? linears = null) =>
        FromCheckpoint(config, tensors.Select(t => (ICheckpointTensor)new InMemoryCheckpointTensor(t.Key, t.Value)), dtype, source, linears);

    /// <summary>
    /// A model from a Hugging Face config and a checkpoint's tensors under Hugging Face's names (what the GGUF reader
    /// maps), each read straight into its parameter before the next: the model is built in <paramref name="dtype"/> and
    /// nothing else of its size is ever held.
    /// </summary>
    /// <param name="stored">The token embedding and head kept in their file's blocks (their tensors are then not among
    /// <paramref name="tensors"/>), or null.</param>
    public static ICausalLanguageModel FromCheckpoint(JsonObject config, IEnumerable<ICheckpointTensor> tensors,
        ScalarType dtype = ScalarType.Float32, string source = "checkpoint", LinearFactory? linears = null, StoredEmbeddings? stored = null)
    {
        var family = DecoderFamilies.ForConfig(config, source);
        var parsed = family.ParseConfig(config, source);
        return Build(family, parsed, dtype, linears, model => DecoderWeights.Load(model, family, parsed, tensors, source), stored);
    }

    /// <summary>A freshly initialised model (HF's initialisation) for a Hugging Face config, in training mode.</summary>
    public static ICausalLanguageModel Create(JsonObject config, ScalarType dtype = ScalarType.Float32, LinearFactory? linears = null)
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

    /// <summary>
    /// Builds the model directly in <paramref name="dtype"/> (torch's default dtype is set to it while the modules are made,
    /// so no float32 copy ever exists), then fills its weights.
    /// </summary>
    static ICausalLanguageModel Build(IDecoderFamily family, IDecoderConfig config, ScalarType dtype, LinearFactory? linears,
        Action<ICausalLanguageModel> loadWeights, StoredEmbeddings? stored = null)
    {
        CheckDtype(dtype);
        var model = InDtype(dtype, () => family.Build(config, linears, stored));
        try
        {
            model.Module.to(dtype); // anything a module made in an explicit dtype
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

    /// <summary>Runs <paramref name="build"/> with torch's default dtype set to <paramref name="dtype"/>, and restores it.</summary>
    static T InDtype<T>(ScalarType dtype, Func<T> build)
    {
        var previous = get_default_dtype();
        if (previous == dtype) return build();
        set_default_dtype(dtype);
        try
        {
            return build();
        }
        finally
        {
            set_default_dtype(previous);
        }
    }

    static ScalarType CheckDtype(ScalarType dtype) => Dtypes.Contains(dtype) ? dtype
        : throw new ArgumentException($"dtype {dtype} is not supported for decoder weights ({string.Join(", ", Dtypes)})");
}
