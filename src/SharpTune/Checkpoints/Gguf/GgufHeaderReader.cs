using System.Buffers.Binary;
using System.Text;

namespace SharpTune.Checkpoints.Gguf;

/// <summary>
/// Reads the GGUF header sequentially, checking every length and count against the bytes left in the
/// file before allocating, so a corrupt or hostile header fails fast with one clear message.
/// </summary>
sealed class GgufHeaderReader(Stream stream, string path, long fileLength)
{
    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    readonly byte[] scratch = new byte[8];

    public long Position { get; private set; }
    public long Remaining => fileLength - Position;

    public InvalidDataException Error(string what) => new($"{path}: {what}");

    void Fill(Span<byte> destination, string what)
    {
        if (destination.Length > Remaining)
            throw Error($"file ends at byte {fileLength} while reading {what} at byte {Position} (truncated or not GGUF)");
        try { stream.ReadExactly(destination); }
        catch (EndOfStreamException) { throw Error($"file ended early while reading {what} at byte {Position} (it changed while being read?)"); }
        Position += destination.Length;
    }

    public uint U32(string what) { Fill(scratch.AsSpan(0, 4), what); return BinaryPrimitives.ReadUInt32LittleEndian(scratch); }
    public ulong U64(string what) { Fill(scratch.AsSpan(0, 8), what); return BinaryPrimitives.ReadUInt64LittleEndian(scratch); }

    /// <summary>A u64 count of items of at least <paramref name="minItemBytes"/> each: refused when the rest of the file cannot hold them.</summary>
    public long Count(string what, int minItemBytes)
    {
        ulong count = U64(what);
        if (count > (ulong)(Remaining / Math.Max(1, minItemBytes)))
            throw Error($"{what} is {count}, but only {Remaining} bytes follow (corrupt count or truncated file)");
        return (long)count;
    }

    public string String(string what)
    {
        long length = Count($"length of {what}", 1);
        if (length > int.MaxValue) throw Error($"{what} is {length} bytes long (corrupt length)");
        Span<byte> bytes = length <= scratch.Length ? scratch.AsSpan(0, (int)length) : new byte[length];
        Fill(bytes, what);
        try { return StrictUtf8.GetString(bytes); }
        catch (DecoderFallbackException) { throw Error($"{what} is not valid UTF-8"); }
    }

    public GgufMetadataValue Value(GgufValueType type, string key)
    {
        string what = $"value of metadata '{key}'";
        switch (type)
        {
            case GgufValueType.Array:
                uint raw = U32($"element type of metadata '{key}'");
                if (raw > (uint)GgufValueType.Float64)
                    throw Error($"metadata '{key}' has unknown array element type id {raw} (expected 0-12)");
                var element = (GgufValueType)raw;
                if (element == GgufValueType.Array) throw Error($"metadata '{key}' is an array of arrays, which is not supported");
                long count = Count($"element count of metadata '{key}'", GgufMetadataValue.MinSize(element));
                if (count > System.Array.MaxLength) throw Error($"metadata '{key}' has {count} elements, more than an array can hold");
                var array = System.Array.CreateInstance(GgufMetadataValue.ClrType(element), count);
                if (element == GgufValueType.String)
                {
                    var strings = (string[])array;
                    for (long i = 0; i < count; i++) strings[i] = String($"element {i} of metadata '{key}'");
                }
                else if (element == GgufValueType.Bool)
                {
                    var bools = (bool[])array;
                    for (long i = 0; i < count; i++) bools[i] = Bool($"element {i} of metadata '{key}'");
                }
                else
                {
                    // Numbers are little-endian in the file, as in memory on every platform .NET runs on here.
                    var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(NumberSpan(array));
                    Fill(bytes, what);
                }
                return new(GgufValueType.Array, array, element);
            case GgufValueType.String: return new(type, String(what));
            case GgufValueType.Bool: return new(type, Bool(what));
            default:
                Span<byte> b = scratch.AsSpan(0, GgufMetadataValue.MinSize(type));
                Fill(b, what);
                // Each arm boxed as object: otherwise the switch's natural type would be double for all of them.
                object value = type switch
                {
                    GgufValueType.UInt8 => (object)b[0],
                    GgufValueType.Int8 => (object)(sbyte)b[0],
                    GgufValueType.UInt16 => (object)BinaryPrimitives.ReadUInt16LittleEndian(b),
                    GgufValueType.Int16 => (object)BinaryPrimitives.ReadInt16LittleEndian(b),
                    GgufValueType.UInt32 => (object)BinaryPrimitives.ReadUInt32LittleEndian(b),
                    GgufValueType.Int32 => (object)BinaryPrimitives.ReadInt32LittleEndian(b),
                    GgufValueType.Float32 => (object)BinaryPrimitives.ReadSingleLittleEndian(b),
                    GgufValueType.UInt64 => (object)BinaryPrimitives.ReadUInt64LittleEndian(b),
                    GgufValueType.Int64 => (object)BinaryPrimitives.ReadInt64LittleEndian(b),
                    GgufValueType.Float64 => (object)BinaryPrimitives.ReadDoubleLittleEndian(b),
                    _ => throw Error($"metadata '{key}' has unknown value type id {(uint)type} (expected 0-12)"),
                };
                return new(type, value);
        }
    }

    bool Bool(string what)
    {
        Fill(scratch.AsSpan(0, 1), what);
        return scratch[0] switch
        {
            0 => false,
            1 => true,
            _ => throw Error($"{what} is a bool stored as {scratch[0]} (expected 0 or 1)"),
        };
    }

    static Span<byte> NumberSpan(Array array) => array switch
    {
        byte[] a => a,
        sbyte[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        ushort[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        short[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        uint[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        int[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        float[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        ulong[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        long[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        double[] a => System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()),
        _ => throw new ArgumentException(array.GetType().Name),
    };
}
