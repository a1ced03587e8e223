using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// What every decoder family's config record offers: it is read from and written to a Hugging Face
/// <c>config.json</c> unchanged (<c>[JsonPropertyName]</c> on every field, unknown fields kept), validates itself
/// with messages naming the field, and describes the model it builds.
/// </summary>
public interface IDecoderConfig : IBackboneShape
{
    /// <summary>The <c>model_type</c> field of <c>config.json</c>.</summary>
    string ModelType { get; }

    /// <summary>Standard deviation of the normal initialisation of matrices and embeddings (<c>initializer_range</c>).</summary>
    double InitializerRange { get; }

    /// <summary>Sizes of the model this config builds.</summary>
    DecoderInfo Info { get; }

    /// <summary>Throws <see cref="InvalidDataException"/> naming the first field (from <paramref name="source"/>) out of range.</summary>
    void Validate(string source);
}

/// <summary>Reading and writing config records as Hugging Face JSON.</summary>
public static class DecoderConfigJson
{
    static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Deserializes and (unless <paramref name="validate"/> is false) validates a config; JSON type errors name the source.</summary>
    public static T Parse<T>(JsonObject json, string source, bool validate = true) where T : class, IDecoderConfig
    {
        T? config;
        try
        {
            config = json.Deserialize<T>(Options);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not a valid {typeof(T).Name} ({e.Message})", e);
        }
        if (config is null) throw new InvalidDataException($"{source}: the config is empty");
        if (validate) config.Validate(source);
        return config;
    }

    /// <summary>The config as a Hugging Face <c>config.json</c> object (its runtime type's fields, unknown fields included).</summary>
    public static JsonObject ToJson(IDecoderConfig config) =>
        JsonSerializer.SerializeToNode(config, config.GetType(), Options)!.AsObject();

    /// <summary>Throws unless <paramref name="value"/> is positive.</summary>
    public static void Positive(string source, string field, long value)
    {
        if (value <= 0) throw new InvalidDataException($"{source}: {field} must be positive, got {value}");
    }

    /// <summary>Throws unless <paramref name="value"/> is positive and finite.</summary>
    public static void Positive(string source, string field, double value)
    {
        if (!(value > 0 && double.IsFinite(value))) throw new InvalidDataException($"{source}: {field} must be positive, got {value}");
    }

    /// <summary>Throws unless <paramref name="value"/> is in [0, 1).</summary>
    public static void Probability(string source, string field, double value)
    {
        if (!(value >= 0 && value < 1)) throw new InvalidDataException($"{source}: {field} must be in [0, 1), got {value}");
    }

    /// <summary>The token ids of a field that is a number, a list of numbers or null (<c>eos_token_id</c> in Llama 3 is a list).</summary>
    public static IReadOnlyList<int> TokenIds(JsonNode? node, string source, string field)
    {
        int Id(JsonNode? value) => value is JsonValue v && v.TryGetValue(out int id) ? id
            : throw new InvalidDataException($"{source}: {field} must be a token id or a list of them, got {node!.ToJsonString()}");
        return node switch
        {
            null => [],
            JsonArray array => array.Select(Id).ToArray(),
            _ => [Id(node)],
        };
    }
}
