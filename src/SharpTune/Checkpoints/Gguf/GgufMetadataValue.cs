namespace SharpTune.Checkpoints.Gguf;

/// <summary>GGUF metadata value types (gguf.md: u8 0 … f64 12).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>
/// One metadata value with its GGUF type, so a file read and written again keeps every type.
/// <see cref="Value"/> is the natural .NET value (byte, sbyte, ushort, short, uint, int, float, bool,
/// string, ulong, long, double); for arrays it is a typed .NET array of the element type
/// (e.g. <c>string[]</c> for <c>tokenizer.ggml.tokens</c>, <c>float[]</c> for scores).
/// </summary>
public sealed record GgufMetadataValue(GgufValueType Type, object Value, GgufValueType? ElementType = null)
{
    static readonly Dictionary<Type, GgufValueType> ClrTypes = new()
    {
        [typeof(byte)] = GgufValueType.UInt8, [typeof(sbyte)] = GgufValueType.Int8,
        [typeof(ushort)] = GgufValueType.UInt16, [typeof(short)] = GgufValueType.Int16,
        [typeof(uint)] = GgufValueType.UInt32, [typeof(int)] = GgufValueType.Int32,
        [typeof(float)] = GgufValueType.Float32, [typeof(bool)] = GgufValueType.Bool,
        [typeof(string)] = GgufValueType.String, [typeof(ulong)] = GgufValueType.UInt64,
        [typeof(long)] = GgufValueType.Int64, [typeof(double)] = GgufValueType.Float64,
    };

    /// <summary>Wraps a .NET value, choosing the GGUF type from its CLR type (<c>2u</c> is u32, <c>1e-5f</c> f32).</summary>
    public static GgufMetadataValue From(object value)
    {
        if (value is GgufMetadataValue v) return v;
        if (ClrTypes.TryGetValue(value.GetType(), out var type)) return new(type, value);
        if (value is Array array && array.GetType().GetElementType() is { } element && ClrTypes.TryGetValue(element, out var elementType))
            return new(GgufValueType.Array, array, elementType);
        throw new ArgumentException($"GGUF metadata cannot hold a {value.GetType().Name}: use a number, bool, string or a one-dimensional array of them");
    }

    /// <summary>The .NET type that holds a value of <paramref name="type"/>.</summary>
    internal static Type ClrType(GgufValueType type) => ClrTypes.First(kv => kv.Value == type).Key;

    /// <summary>Bytes one scalar of <paramref name="type"/> takes in the file (strings: at least their 8-byte length).</summary>
    internal static int MinSize(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.String or GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        GgufValueType.Array => 12,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    public string TypeName => Type == GgufValueType.Array ? $"{ElementType} array" : Type.ToString();

    public override string ToString() => Value is Array a ? $"{TypeName}[{a.Length}]" : $"{Value} ({Type})";
}

/// <summary>One tensor's entry: GGUF dims <c>ne</c> (fastest first) and the PyTorch shape (reversed).</summary>
public sealed record GgufTensorInfo(string Name, long[] Dims, GgufTensorType Type, long Offset, long ByteSize)
{
    /// <summary>PyTorch shape: <see cref="Dims"/> reversed (a Linear weight [out, in] has ne = [in, out]).</summary>
    public long[] Shape { get; } = Dims.Reverse().ToArray();

    public long ElementCount => Dims.Aggregate(1L, (a, b) => a * b);

    public string ShapeText => $"[{string.Join(", ", Shape)}]";
}
