using SharpTune.Models.Quantized;
using System.Text.Json.Nodes;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Decoders.Gemma;
using SharpTune.Models.Decoders.Gguf;
using SharpTune.Models.Decoders.Gpt2;
using SharpTune.Models.Decoders.Llama;
using SharpTune.Models.Decoders.Qwen2;

namespace SharpTune.Models.Decoders;

/// <summary>
/// A decoder family's descriptor: how its config is read, its model built, its checkpoint keys named and its GGUF form
/// read and written. Each family's folder holds its descriptor (<c>&lt;Family&gt;Family.Descriptor</c>).
/// </summary>
public interface IDecoderFamily
{
    /// <summary>The family's name (gpt2, llama, qwen2).</summary>
    string Name { get; }

    /// <summary>The <c>model_type</c> values of Hugging Face's <c>config.json</c> this family reads.</summary>
    IReadOnlyList<string> ModelTypes { get; }

    /// <summary>The GGUF <c>general.architecture</c> values this family reads.</summary>
    IReadOnlyList<string> GgufArchitectures { get; }

    /// <summary>The config record this family parses.</summary>
    Type ConfigType { get; }

    /// <summary>The family's GGUF form, one table for the reader and the writers.</summary>
    IGgufTable Gguf { get; }

    /// <summary>Reads and validates the config (errors name <paramref name="source"/> and the field).</summary>
    /// <param name="validate">False only to read a file's layout (its tensor table) before the model is built, which validates.</param>
    IDecoderConfig ParseConfig(JsonObject json, string source, bool validate = true);

    /// <summary>A freshly initialised model for <paramref name="config"/> (one this family parsed).</summary>
    /// <param name="stored">The token embedding and head kept in their file's blocks, or null for dense parameters.</param>
    ICausalLanguageModel Build(IDecoderConfig config, LinearFactory? linears = null, StoredEmbeddings? stored = null);

    /// <summary>The model's key for a checkpoint's key, or null for a tensor the model does not take (a buffer, a tied head).</summary>
    string? MapCheckpointKey(string key, IDecoderConfig config);
}

/// <summary>A family from its config record type, its GGUF table and two functions: one builds the model, one maps checkpoint keys.</summary>
public sealed class DecoderFamily<TConfig>(
    string name, IReadOnlyList<string> modelTypes, IGgufTable gguf,
    Func<TConfig, LinearFactory?, StoredEmbeddings?, ICausalLanguageModel> build, Func<string, TConfig, string?> mapKey) : IDecoderFamily
    where TConfig : class, IDecoderConfig
{
    public string Name => name;
    public IReadOnlyList<string> ModelTypes => modelTypes;
    public IReadOnlyList<string> GgufArchitectures => [gguf.Architecture];
    public Type ConfigType => typeof(TConfig);
    public IGgufTable Gguf => gguf;

    public IDecoderConfig ParseConfig(JsonObject json, string source, bool validate = true) => DecoderConfigJson.Parse<TConfig>(json, source, validate);

    public ICausalLanguageModel Build(IDecoderConfig config, LinearFactory? linears = null, StoredEmbeddings? stored = null) =>
        build(Typed(config), linears, stored);

    public string? MapCheckpointKey(string key, IDecoderConfig config) => mapKey(key, Typed(config));

    TConfig Typed(IDecoderConfig config) => config as TConfig
        ?? throw new ArgumentException($"the {name} family takes a {typeof(TConfig).Name}, not a {config.GetType().Name}");
}

/// <summary>
/// The registry of decoder families, keyed by Hugging Face <c>model_type</c> and GGUF <c>general.architecture</c>
/// (as transformers' <c>AutoModelForCausalLM</c> and llama.cpp's architecture table). A new family is a folder with its
/// config, modules, GGUF table and descriptor, plus one line here.
/// </summary>
public static class DecoderFamilies
{
    static readonly List<IDecoderFamily> Families = [];

    static DecoderFamilies()
    {
        Register(LlamaFamily.Descriptor);
        Register(Qwen2Family.Descriptor);
        Register(Gpt2Family.Descriptor);
        Register(GemmaFamily.Descriptor);
    }

    public static IReadOnlyList<IDecoderFamily> All => Families;

    /// <summary>Adds a family; a name, model type or GGUF architecture that is already taken is refused.</summary>
    public static void Register(IDecoderFamily family)
    {
        lock (Families)
        {
            if (Families.Any(f => f.Name == family.Name)) throw new InvalidOperationException($"decoder family '{family.Name}' is already registered");
            foreach (var type in family.ModelTypes)
                if (Families.FirstOrDefault(f => f.ModelTypes.Contains(type)) is { } taken)
                    throw new InvalidOperationException($"model_type '{type}' is already registered to decoder family '{taken.Name}'");
            foreach (var architecture in family.GgufArchitectures)
                if (Families.FirstOrDefault(f => f.GgufArchitectures.Contains(architecture)) is { } taken)
                    throw new InvalidOperationException($"GGUF architecture '{architecture}' is already registered to decoder family '{taken.Name}'");
            Families.Add(family);
        }
    }

    /// <summary>The family reading <paramref name="modelType"/>; an unknown one is an error naming the supported ones.</summary>
    public static IDecoderFamily ForModelType(string modelType, string source = "config") =>
        Families.FirstOrDefault(f => f.ModelTypes.Contains(modelType))
        ?? throw new InvalidDataException(
            $"{source}: model_type '{modelType}' is not a supported decoder (supported: {string.Join(", ", Families.SelectMany(f => f.ModelTypes))})");

    /// <summary>The family reading GGUF architecture <paramref name="architecture"/>; an unknown one is an error naming the supported ones.</summary>
    public static IDecoderFamily ForGgufArchitecture(string architecture, string source = "GGUF file") =>
        Families.FirstOrDefault(f => f.GgufArchitectures.Contains(architecture))
        ?? throw new InvalidDataException(
            $"{source}: general.architecture '{architecture}' is not a supported decoder (supported: {string.Join(", ", Families.SelectMany(f => f.GgufArchitectures))})");

    /// <summary>The family of a config record: the one registered for its <c>model_type</c>, which must parse this record's type.</summary>
    public static IDecoderFamily Of(IDecoderConfig config, string source = "config")
    {
        var family = ForModelType(config.ModelType, source);
        if (family.ConfigType != config.GetType())
            throw new InvalidDataException(
                $"{source}: model_type '{config.ModelType}' is read by the {family.Name} family's {family.ConfigType.Name}, not by {config.GetType().Name}");
        return family;
    }

    /// <summary>The family named by the <c>model_type</c> of a Hugging Face <c>config.json</c>.</summary>
    public static IDecoderFamily ForConfig(JsonObject config, string source = "config")
    {
        string? modelType = config["model_type"] is JsonValue value && value.TryGetValue(out string? text) ? text : null;
        if (modelType is null)
            throw new InvalidDataException($"{source}: model_type is missing (supported: {string.Join(", ", Families.SelectMany(f => f.ModelTypes))})");
        return ForModelType(modelType, source);
    }
}
