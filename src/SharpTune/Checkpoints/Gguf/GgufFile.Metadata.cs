namespace SharpTune.Checkpoints.Gguf;

// Typed metadata getters. Integers of any width read as long and floats of either width as double,
// because converters differ in the widths they write (u32 vs i32 for counts, f32 vs f64 for epsilons).
public sealed partial class GgufFile
{
    public bool HasKey(string key) => metadata.ContainsKey(key);

    InvalidDataException WrongType(string key, GgufMetadataValue v, string expected) =>
        new($"{Path}: metadata '{key}' is {v.TypeName}, expected {expected}");

    public string GetString(string key) => TryGetString(key, out var s) ? s : throw Missing(key);

    public bool TryGetString(string key, out string value)
    {
        value = "";
        if (!metadata.TryGetValue(key, out var v)) return false;
        value = v.Value as string ?? throw WrongType(key, v, "a string");
        return true;
    }

    public long GetInt(string key) => TryGetInt(key, out long n) ? n : throw Missing(key);

    public bool TryGetInt(string key, out long value)
    {
        value = 0;
        if (!metadata.TryGetValue(key, out var v)) return false;
        value = v.Value switch
        {
            byte or sbyte or ushort or short or uint or int or long => Convert.ToInt64(v.Value),
            ulong u when u <= long.MaxValue => (long)u,
            ulong u => throw new InvalidDataException($"{Path}: metadata '{key}' = {u} does not fit in a signed 64-bit integer"),
            _ => throw WrongType(key, v, "an integer"),
        };
        return true;
    }

    public double GetFloat(string key) => TryGetFloat(key, out double x) ? x : throw Missing(key);

    public bool TryGetFloat(string key, out double value)
    {
        value = 0;
        if (!metadata.TryGetValue(key, out var v)) return false;
        value = v.Value switch
        {
            float f => f,
            double d => d,
            byte or sbyte or ushort or short or uint or int or long or ulong => Convert.ToDouble(v.Value),
            _ => throw WrongType(key, v, "a number"),
        };
        return true;
    }

    public bool GetBool(string key) => TryGetBool(key, out bool b) ? b : throw Missing(key);

    public bool TryGetBool(string key, out bool value)
    {
        value = false;
        if (!metadata.TryGetValue(key, out var v)) return false;
        value = v.Value is bool b ? b : throw WrongType(key, v, "a bool");
        return true;
    }

    public string[] GetStringArray(string key) => GetArray<string>(key);

    /// <summary>
    /// The array stored under <paramref name="key"/> as <typeparamref name="T"/>[]: the stored array itself
    /// when the element type matches, else numbers converted element by element (an error names the key
    /// and element when one does not fit).
    /// </summary>
    public T[] GetArray<T>(string key) => TryGetArray<T>(key, out var a) ? a : throw Missing(key);

    public bool TryGetArray<T>(string key, out T[] value)
    {
        value = [];
        if (!metadata.TryGetValue(key, out var v)) return false;
        if (v.Value is not Array array) throw WrongType(key, v, $"an array of {typeof(T).Name}");
        if (array is T[] same) { value = same; return true; }
        bool numeric = v.ElementType is not (GgufValueType.String or GgufValueType.Bool) && IsNumber(typeof(T));
        if (!numeric) throw WrongType(key, v, $"an array of {typeof(T).Name}");
        var result = new T[array.Length];
        for (int i = 0; i < result.Length; i++)
        {
            try { result[i] = (T)Convert.ChangeType(array.GetValue(i)!, typeof(T), System.Globalization.CultureInfo.InvariantCulture); }
            catch (OverflowException)
            {
                throw new InvalidDataException($"{Path}: element {i} of metadata '{key}' ({array.GetValue(i)}) does not fit in {typeof(T).Name}");
            }
        }
        value = result;
        return true;
    }

    static bool IsNumber(Type t) => t == typeof(byte) || t == typeof(sbyte) || t == typeof(short) || t == typeof(ushort)
        || t == typeof(int) || t == typeof(uint) || t == typeof(long) || t == typeof(ulong) || t == typeof(float) || t == typeof(double);

    InvalidDataException Missing(string key) => new($"{Path}: metadata key '{key}' is missing");
}
