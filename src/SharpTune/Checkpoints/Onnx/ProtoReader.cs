namespace SharpTune.Checkpoints.Onnx;

/// <summary>The protobuf wire types; 3 and 4 (groups) are obsolete and ONNX never writes them.</summary>
internal enum WireType { Varint = 0, Fixed64 = 1, Len = 2, Fixed32 = 5 }

/// <summary>
/// A minimal reader of the protobuf wire format (https://protobuf.dev/programming-guides/encoding/).
/// Every length is checked against the bytes that remain before anything is sliced or allocated, so a
/// truncated or hostile file ends in an <see cref="InvalidDataException"/> naming the file, the message
/// being read and the byte offset, never in a crash, a hang or a huge allocation.
/// </summary>
internal ref struct ProtoReader
{
    static readonly System.Text.UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    readonly ReadOnlySpan<byte> data;
    readonly string source;   // the file, for messages
    readonly string message;  // e.g. "GraphProto", for messages
    readonly long start;      // offset of data[0] in the file
    int position;

    public ProtoReader(ReadOnlySpan<byte> data, string source, string message, long start = 0)
    {
        this.data = data;
        this.source = source;
        this.message = message;
        this.start = start;
    }

    public readonly bool AtEnd => position >= data.Length;

    /// <summary>An exception that says where in the file reading failed and why.</summary>
    public readonly InvalidDataException Error(string what) =>
        new($"{source}: corrupt or truncated ONNX file: {what} (in {message} at byte {start + position})");

    /// <summary>Reads the next field key. Field 0 and the group wire types are invalid in any message we read.</summary>
    public (int Field, WireType Wire) ReadTag()
    {
        ulong key = ReadVarint();
        ulong field = key >> 3;
        int wire = (int)(key & 7);
        if (field == 0 || field > int.MaxValue) throw Error($"invalid field number {field}");
        if (wire is not (0 or 1 or 2 or 5)) throw Error($"unsupported wire type {wire} for field {field}");
        return ((int)field, (WireType)wire);
    }

    public ulong ReadVarint()
    {
        ulong value = 0;
        // A 64-bit value needs at most 10 bytes of 7 bits; the 10th may only carry the top bit.
        for (int shift = 0; shift < 70; shift += 7)
        {
            if (position >= data.Length) throw Error("varint runs past the end of the data");
            byte b = data[position++];
            if (shift == 63 && b > 1) throw Error("varint overflows 64 bits");
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return value;
        }
        throw Error("varint longer than 10 bytes");  // unreachable: the 10th byte has no continuation bit
    }

    public long ReadInt64() => (long)ReadVarint();

    /// <summary>Protobuf int32 is sign-extended to 64 bits on the wire; truncation gives back the value.</summary>
    public int ReadInt32() => unchecked((int)ReadVarint());

    public float ReadFloat() => BitConverter.Int32BitsToSingle(unchecked((int)ReadFixed32()));

    public uint ReadFixed32()
    {
        var bytes = Take(4, "fixed32");
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(bytes);
    }

    public ulong ReadFixed64()
    {
        var bytes = Take(8, "fixed64");
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes);
    }

    /// <summary>The payload of a length-delimited field, after checking that it fits in what remains.</summary>
    public ReadOnlySpan<byte> ReadBytes()
    {
        ulong length = ReadVarint();
        int remaining = data.Length - position;
        if (length > (ulong)remaining) throw Error($"length {length} exceeds the {remaining} bytes that remain");
        return Take((int)length, "bytes");
    }

    public string ReadString()
    {
        var bytes = ReadBytes();
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (ArgumentException)
        {
            throw Error("string is not valid UTF-8");
        }
    }

    /// <summary>A reader over an embedded message; offsets in its errors stay file offsets.</summary>
    public ProtoReader ReadMessage(string name)
    {
        ulong length = ReadVarint();
        int remaining = data.Length - position;
        if (length > (ulong)remaining) throw Error($"{name} length {length} exceeds the {remaining} bytes that remain");
        var inner = new ProtoReader(data.Slice(position, (int)length), source, name, start + position);
        position += (int)length;
        return inner;
    }

    /// <summary>Skips a field we do not decode. Groups are rejected by <see cref="ReadTag"/>, so this cannot recurse.</summary>
    public void Skip(WireType wire)
    {
        switch (wire)
        {
            case WireType.Varint: ReadVarint(); break;
            case WireType.Fixed64: Take(8, "fixed64"); break;
            case WireType.Fixed32: Take(4, "fixed32"); break;
            case WireType.Len: ReadBytes(); break;
        }
    }

    /// <summary>Repeated int64/int32 fields: packed (one Len field) or one varint per element; both are legal.</summary>
    public void ReadVarints(WireType wire, List<long> into)
    {
        if (wire == WireType.Varint) { into.Add(ReadInt64()); return; }
        Expect(wire, WireType.Len, "repeated varint");
        var packed = ReadMessage(message);
        while (!packed.AtEnd) into.Add(packed.ReadInt64());
    }

    /// <summary>Repeated float fields: packed (one Len field of 4-byte values) or one fixed32 per element.</summary>
    public void ReadFloats(WireType wire, List<float> into)
    {
        if (wire == WireType.Fixed32) { into.Add(ReadFloat()); return; }
        Expect(wire, WireType.Len, "repeated float");
        var bytes = ReadBytes();
        if (bytes.Length % 4 != 0) throw Error($"packed floats of {bytes.Length} bytes is not a multiple of 4");
        for (int i = 0; i < bytes.Length; i += 4)
            into.Add(System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(bytes[i..]));
    }

    public readonly void Expect(WireType actual, WireType expected, string field)
    {
        if (actual != expected) throw Error($"{field} has wire type {(int)actual}, expected {(int)expected}");
    }

    ReadOnlySpan<byte> Take(int count, string what)
    {
        if (count > data.Length - position) throw Error($"{what} of {count} bytes runs past the end of the data");
        var slice = data.Slice(position, count);
        position += count;
        return slice;
    }
}
