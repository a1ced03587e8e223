using System.Text.Json;

namespace SharpTune.Serving;

/// <summary>
/// A request body read field by field: each getter checks the JSON type and range and throws an <see cref="ApiError"/>
/// naming the field, so no malformed body reaches the model (or becomes a 500). Unknown fields are ignored, as clients
/// send fields for other servers' features.
/// </summary>
public sealed class JsonRequest : IDisposable
{
    readonly JsonDocument document;

    JsonRequest(JsonDocument document) => this.document = document;

    public static JsonRequest Parse(byte[] body)
    {
        if (body.Length == 0) throw ApiError.BadRequest("the request body is empty; send a JSON object");
        if (!System.Text.Unicode.Utf8.IsValid(body)) throw ApiError.BadRequest("the request body is not valid UTF-8");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException e)
        {
            throw ApiError.BadRequest($"the request body is not valid JSON: {e.Message}");
        }
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            throw ApiError.BadRequest("the request body must be a JSON object");
        }
        if (!TextIsWhole(document.RootElement))
        {
            document.Dispose();
            throw ApiError.BadRequest("the request body holds a string that is not valid Unicode (a lone surrogate escape such as \\ud800)");
        }
        return new JsonRequest(document);
    }

    /// <summary>Whether every string and property name reads as UTF-16 (JSON escapes can spell lone surrogates, which GetString refuses).</summary>
    static bool TextIsWhole(JsonElement element)
    {
        try
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.String:
                    _ = element.GetString();
                    return true;
                case JsonValueKind.Array:
                    return element.EnumerateArray().All(TextIsWhole);
                case JsonValueKind.Object:
                    return element.EnumerateObject().All(p => p.Name.Length >= 0 && TextIsWhole(p.Value));
                default:
                    return true;
            }
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    public JsonElement Root => document.RootElement;

    JsonElement? Field(string name) =>
        Root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    public string RequiredString(string name) =>
        OptionalString(name) ?? throw ApiError.BadRequest($"'{name}' is required", name, "missing_required_parameter");

    public string? OptionalString(string name) => Field(name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } v => v.GetString(),
        _ => throw ApiError.BadRequest($"'{name}' must be a string", name, "invalid_type"),
    };

    public bool Bool(string name, bool fallback) => Field(name) switch
    {
        null => fallback,
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        _ => throw ApiError.BadRequest($"'{name}' must be true or false", name, "invalid_type"),
    };

    public double? Number(string name, double min, double max)
    {
        if (Field(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double x) || !double.IsFinite(x))
            throw ApiError.BadRequest($"'{name}' must be a number", name, "invalid_type");
        if (x < min || x > max) throw ApiError.BadRequest($"'{name}' must be between {min} and {max}, got {x}", name, "invalid_value");
        return x;
    }

    public long? Integer(string name, long min, long max)
    {
        if (Field(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x))
            throw ApiError.BadRequest($"'{name}' must be an integer", name, "invalid_type");
        if (x < min || x > max) throw ApiError.BadRequest($"'{name}' must be between {min} and {max}, got {x}", name, "invalid_value");
        return x;
    }

    /// <summary>A string or an array of strings (OpenAI's <c>stop</c>, <c>input</c>); null when absent.</summary>
    public IReadOnlyList<string>? Strings(string name, int maxCount, bool allowEmptyStrings = true)
    {
        if (Field(name) is not { } v) return null;
        var list = new List<string>();
        if (v.ValueKind == JsonValueKind.String) list.Add(v.GetString()!);
        else if (v.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in v.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String)
                    throw ApiError.BadRequest($"'{name}' must be a string or an array of strings", name, "invalid_type");
                list.Add(item.GetString()!);
            }
        }
        else throw ApiError.BadRequest($"'{name}' must be a string or an array of strings", name, "invalid_type");
        if (list.Count > maxCount) throw ApiError.BadRequest($"'{name}' has {list.Count} items; at most {maxCount} are accepted", name, "invalid_value");
        if (!allowEmptyStrings && list.Any(string.IsNullOrEmpty)) throw ApiError.BadRequest($"'{name}' must not hold empty strings", name, "invalid_value");
        return list;
    }

    public JsonElement? Object(string name) => Field(name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Object } v => v,
        _ => throw ApiError.BadRequest($"'{name}' must be an object", name, "invalid_type"),
    };

    public void Dispose() => document.Dispose();
}
