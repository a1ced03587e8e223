using SharpTune.Models.Quantized;
using System.Text.Json.Nodes;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Decoders.Gpt2;
using SharpTune.Models.Decoders.Llama;
using SharpTune.Models.Decoders.Qwen2;

namespace SharpTune.Models.Decoders;

/// <summary>A decoder family: how its config is read, its model built and its checkpoint keys named.</summary>
public interface IDecoderFamily
{
    /// <summary>The family's name (gpt2, llama, qwen2).</summary>
    string Name { get; }

    /// <summary>The <c>model_type</c> values of Hugging Face's <c>config.json</c> this family reads.</summary>
    IReadOnlyList<string> ModelTypes { get; }

    /// <summary>The GGUF <c>general.architecture</c> values this family reads.</summary>
    IReadOnlyList<string> GgufArchitectures { get; }

    /// <summary>Reads and validates the config (errors name <paramref name="source"/> and the field).</summary>
    IDecoderConfig ParseConfig(JsonObject json, string source);

    /// <summary>A freshly initialised model for <paramref name="config"/> (one this family parsed).</summary>
    /// <param name="stored">The token embedding and head kept in their file's blocks, or null for dense parameters.</param>
    ICausalLanguageModel Build(IDecoderConfig config, LinearFactory? linears = null, StoredEmbeddings? stored = null);

    /// <summary>The model's key for a checkpoint's key, or null for a tensor the model does not take (a buffer, a tied head).</summary>
    string? MapCheckpointKey(string key, IDecoderConfig config);
}

/// <summary>A family from its config record type and two functions: one builds the model, one maps checkpoint keys.</summary>
public sealed class DecoderFamily<TConfig>(
    string name, IReadOnlyList<string> modelTypes, IReadOnlyList<string> ggufArchitectures,
    Func<TConfig, LinearFactory?, StoredEmbeddings?, ICausalLanguageModel> build, Func<string, TConfig, string?> mapKey) : IDecoderFamily
    where TConfig : class, IDecoderConfig
{
    public string Name => name;
    public IReadOnlyList<string> ModelTypes => modelTypes;
    public IReadOnlyList<string> GgufArchitectures => ggufArchitectures;

    public IDecoderConfig ParseConfig(JsonObject json, string source) => DecoderConfigJson.Parse<TConfig>(json, source);

    public ICausalLanguageModel Build(IDecoderConfig config, LinearFactory? linears = null, StoredEmbeddings? stored = null) =>
        build(Typed(config), linears, stored);

    public string? MapCheckpointKey(string key, IDecoderConfig config) => mapKey(key, Typed(config));

    TConfig Typed(IDecoderConfig config) => config as TConfig
        ?? throw new ArgumentException($"the {name} family takes a {typeof(TConfig).Name}, not a {config.GetType().Name}");
}

/// <summary>
/// The registry of decoder families, keyed by Hugging Face <c>model_type</c> and GGUF <c>general.architecture</c>
/// (as transformers' <c>AutoModelForCausalLM</c> and llama.cpp's architecture table). A new family is a folder with its
/// config and modules plus one line here.
/// </summary>
public static class DecoderFamilies
{
    static readonly List<IDecoderFamily> Families = [];

    static DecoderFamilies()
    {
        Register(new DecoderFamily<LlamaConfig>("llama", ["llama", "mistral"], ["llama"], (c, l, s) => new LlamaForCausalLM(c, l, s), LlamaCheckpointKeys.Map));
        Register(new DecoderFamily<Qwen2Config>("qwen2", ["qwen2"], ["qwen2"], (c, l, s) => new Qwen2ForCausalLM(c, l, s), LlamaCheckpointKeys.Map));
        Register(new DecoderFamily<Gpt2Config>("gpt2", ["gpt2"], ["gpt2"], (c, l, s) => new GPT2LMHeadModel(c, l, s), Gpt2CheckpointKeys.Map));
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

    /// <summary>The family named by the <c>model_type</c> of a Hugging Face <c>config.json</c>.</summary>
    public static IDecoderFamily ForConfig(JsonObject config, string source = "config")
    {
        string? modelType = config["model_type"] is JsonValue value && value.TryGetValue(out string? text) ? text : null;
        if (modelType is null)
            throw new InvalidDataException($"{source}: model_type is missing (supported: {string.Join(", ", Families.SelectMany(f => f.ModelTypes))})");
        return ForModelType(modelType, source);
    }
}
