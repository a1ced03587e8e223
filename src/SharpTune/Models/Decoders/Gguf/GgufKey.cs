using System.Text.Json.Nodes;
using SharpTune.Checkpoints.Gguf;

namespace SharpTune.Models.Decoders.Gguf;

/// <summary>How a metadata value is typed in GGUF, as llama.cpp reads it.</summary>
public enum GgufKeyType
{
    /// <summary>A positive size: written u32, read as any integer into a JSON integer.</summary>
    Size,
    /// <summary>A number: written f32, read as any number into a JSON number.</summary>
    Float,
}

/// <summary>
/// One metadata key of a family's GGUF form, both ways: <c>{arch}.<see cref="Key"/></c> is read into the Hugging Face
/// config field <see cref="Field"/> (none: written only) and written from the typed config by <see cref="Write"/> (null:
/// not written for that config). A required key missing from a file is an error naming it; an optional one takes
/// <see cref="Default"/> or is left out.
/// </summary>
public sealed record GgufKey<TConfig>(string Key, string? Field, GgufKeyType Type, Func<TConfig, double?> Write, bool Required = true, double? Default = null)
{
    /// <summary>Sets <see cref="Field"/> of <paramref name="config"/> from the file, if the key has a field.</summary>
    public void Read(GgufFile file, string architecture, JsonObject config)
    {
        if (Field is null) return;
        string key = $"{architecture}.{Key}";
        if (!file.HasKey(key))
        {
            if (Required) throw new InvalidDataException($"{file.Path}: metadata '{key}' is missing");
            if (Default is { } fallback) config[Field] = Type == GgufKeyType.Size ? (long)fallback : fallback;
            return;
        }
        if (Type == GgufKeyType.Float)
        {
            config[Field] = file.GetFloat(key);
            return;
        }
        long value = file.GetInt(key);
        if (value <= 0 || value > int.MaxValue) throw new InvalidDataException($"{file.Path}: metadata '{key}' = {value}, expected a positive size");
        config[Field] = value;
    }

    /// <summary>The key and its typed value for <paramref name="config"/>, or null when it is not written.</summary>
    public KeyValuePair<string, object>? Written(TConfig config, string architecture) => Write(config) is not { } value ? null
        : new($"{architecture}.{Key}", Type == GgufKeyType.Size ? checked((uint)value) : (object)(float)value);
}
