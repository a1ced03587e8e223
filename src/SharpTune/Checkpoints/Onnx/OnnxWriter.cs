using System.Runtime.InteropServices;
using System.Text;

namespace SharpTune.Checkpoints.Onnx;

/// <summary>A dimension of a graph input or output: a fixed size, or a named one that varies per call (<c>batch</c>, <c>sequence</c>).</summary>
internal readonly record struct OnnxDim(long Size, string? Name)
{
    public static OnnxDim Fixed(long size) => new(size, null);
    public static OnnxDim Dynamic(string name) => new(0, name);
    public override string ToString() => Name ?? Size.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>A graph input or output: name, element type and shape (ValueInfoProto).</summary>
internal sealed record OnnxValueInfo(string Name, OnnxDataType Type, OnnxDim[] Shape);

/// <summary>
/// Everything an ONNX file holds that the writer writes: the graph (nodes in topological order, initializers, inputs,
/// outputs), the default-domain opset it is written for, and free-form metadata (ModelProto.metadata_props).
/// </summary>
internal sealed record OnnxModelDefinition(
    string GraphName, IReadOnlyList<OnnxNode> Nodes, IReadOnlyList<OnnxTensor> Initializers,
    IReadOnlyList<OnnxValueInfo> Inputs, IReadOnlyList<OnnxValueInfo> Outputs, int Opset,
    IReadOnlyDictionary<string, string> Metadata, string DocString = "");

/// <summary>
/// Writes an ONNX ModelProto, the counterpart of <see cref="OnnxModel.Parse"/> and written with the same field numbers
/// (onnx/onnx.proto): ModelProto ir_version = 1, producer_name = 2, producer_version = 3, doc_string = 6, graph = 7,
/// opset_import = 8, metadata_props = 14; GraphProto node = 1, name = 2, initializer = 5, input = 11, output = 12;
/// NodeProto input = 1, output = 2, name = 3, op_type = 4, attribute = 5, domain = 7; AttributeProto name = 1, f = 2,
/// i = 3, s = 4, t = 5, floats = 7, ints = 8, type = 20; TensorProto dims = 1, data_type = 2, name = 8, raw_data = 9;
/// ValueInfoProto name = 1, type = 2; TypeProto tensor_type = 1 { elem_type = 1, shape = 2 { dim = 1 { dim_value = 1,
/// dim_param = 2 } } }; OperatorSetIdProto domain = 1, version = 2; StringStringEntryProto key = 1, value = 2.
/// </summary>
/// <remarks>
/// Tensor data goes into raw_data (little-endian, as the format says). Each initializer is encoded on its own and the
/// graph's length is their sum, so the file streams out without holding a second copy of the whole graph. Protobuf
/// caps a message at 2 GiB; a larger graph needs ONNX's external data, which this writer does not produce.
/// </remarks>
internal static class OnnxWriter
{
    /// <summary>IR version 8 goes with opset 17 (onnx/docs/Versioning.md); ONNX Runtime reads it and later ones.</summary>
    public const long IrVersion = 8;

    const long MaxMessage = int.MaxValue;

    /// <summary>Writes <paramref name="model"/> to <paramref name="path"/> atomically (a reader never sees half a file).</summary>
    public static void Write(string path, OnnxModelDefinition model)
    {
        var (prefix, pieces) = Encode(model, path);
        AtomicFile.Write(path, stream =>
        {
            stream.Write(prefix);
            foreach (byte[] piece in pieces) stream.Write(piece);
        }, prefix.Length + pieces.Sum(p => (long)p.Length));
    }

    /// <summary>The file's bytes, for tests and small graphs.</summary>
    public static byte[] ToBytes(OnnxModelDefinition model)
    {
        var (prefix, pieces) = Encode(model, "ONNX model");
        using var stream = new MemoryStream();
        stream.Write(prefix);
        foreach (byte[] piece in pieces) stream.Write(piece);
        return stream.ToArray();
    }

    /// <summary>The ModelProto up to and including the graph's tag and length, then the graph's fields in order.</summary>
    static (byte[] Prefix, List<byte[]> GraphPieces) Encode(OnnxModelDefinition model, string destination)
    {
        var pieces = new List<byte[]>();
        var nodes = new ProtoEncoder();
        foreach (var node in model.Nodes) nodes.Message(1, Node(node));
        nodes.String(2, model.GraphName);
        pieces.Add(nodes.ToArray());
        foreach (var tensor in model.Initializers)
        {
            var field = new ProtoEncoder();
            field.Message(5, Tensor(tensor));
            pieces.Add(field.ToArray());
        }
        var values = new ProtoEncoder();
        foreach (var input in model.Inputs) values.Message(11, ValueInfo(input));
        foreach (var output in model.Outputs) values.Message(12, ValueInfo(output));
        pieces.Add(values.ToArray());

        long graphLength = pieces.Sum(p => (long)p.Length);
        if (graphLength > MaxMessage)
            throw new InvalidOperationException(
                $"{destination}: the graph needs {graphLength:N0} bytes, over protobuf's 2 GiB limit for one file (ONNX external data is not written)");

        var header = new ProtoEncoder();
        header.Varint(1, IrVersion);
        header.String(2, "SharpTune");
        header.String(3, typeof(OnnxWriter).Assembly.GetName().Version?.ToString() ?? "");
        if (model.DocString.Length > 0) header.String(6, model.DocString);
        header.Message(8, opset => opset.String(1, "").Varint(2, model.Opset));
        foreach (var (key, value) in model.Metadata) header.Message(14, entry => entry.String(1, key).String(2, value));
        header.Tag(7, 2).RawVarint((ulong)graphLength);
        return (header.ToArray(), pieces);
    }

    static Action<ProtoEncoder> Node(OnnxNode node) => w =>
    {
        foreach (string input in node.Inputs) w.String(1, input);
        foreach (string output in node.Outputs) w.String(2, output);
        if (node.Name.Length > 0) w.String(3, node.Name);
        w.String(4, node.OpType);
        foreach (var attribute in node.Attributes) w.Message(5, Attribute(attribute));
        if (node.Domain.Length > 0) w.String(7, node.Domain);
    };

    /// <summary>AttributeProto.type: FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6, INTS 7; exactly one value is set.</summary>
    static Action<ProtoEncoder> Attribute(OnnxAttribute a) => w =>
    {
        w.String(1, a.Name);
        if (a.F is { } f) w.Float(2, f).Varint(20, 1);
        else if (a.I is { } i) w.Varint(3, i).Varint(20, 2);
        else if (a.S is { } s) w.String(4, s).Varint(20, 3);
        else if (a.T is { } t) w.Message(5, Tensor(t)).Varint(20, 4);
        else if (a.Floats.Length > 0) w.Bytes(7, MemoryMarshal.AsBytes(a.Floats.AsSpan())).Varint(20, 6);
        else if (a.Ints.Length > 0) w.PackedVarints(8, a.Ints).Varint(20, 7);
        else throw new ArgumentException($"attribute '{a.Name}' has no value");
    };

    static Action<ProtoEncoder> Tensor(OnnxTensor t) => w =>
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX raw_data needs a little-endian machine");
        if (t.Dims.Length > 0) w.PackedVarints(1, t.Dims);
        w.Varint(2, t.DataType);
        if (t.Name.Length > 0) w.String(8, t.Name);
        switch ((OnnxDataType)t.DataType)
        {
            case OnnxDataType.Float:
                var floats = t.Floats ?? throw new ArgumentException($"tensor '{t.Name}' is FLOAT but has no float values");
                Check(t, floats.Length);
                w.Bytes(9, MemoryMarshal.AsBytes(floats.AsSpan()));
                break;
            case OnnxDataType.Int64:
                var ints = t.Ints ?? throw new ArgumentException($"tensor '{t.Name}' is INT64 but has no integer values");
                Check(t, ints.Length);
                w.Bytes(9, MemoryMarshal.AsBytes(ints.AsSpan()));
                break;
            default:
                throw new ArgumentException($"tensor '{t.Name}': only FLOAT and INT64 tensors are written, not data type {t.DataType}");
        }
    };

    static void Check(OnnxTensor t, int count)
    {
        if (count != t.ElementCount) throw new ArgumentException($"tensor '{t.Name}' of shape {t.Shape} has {count} values, expected {t.ElementCount}");
    }

    static Action<ProtoEncoder> ValueInfo(OnnxValueInfo value) => w => w
        .String(1, value.Name)
        .Message(2, type => type.Message(1, tensor =>
        {
            tensor.Varint(1, (long)value.Type);
            tensor.Message(2, shape =>
            {
                foreach (var dim in value.Shape)
                    shape.Message(1, d => { if (dim.Name is { } name) d.String(2, name); else d.Varint(1, dim.Size); });
            });
        }));
}

/// <summary>The protobuf wire format's encoding side (https://protobuf.dev/programming-guides/encoding/), as <see cref="ProtoReader"/> reads it.</summary>
internal sealed class ProtoEncoder
{
    readonly MemoryStream stream = new();

    public byte[] ToArray() => stream.ToArray();

    public ProtoEncoder Tag(int field, int wire) => RawVarint(((ulong)field << 3) | (uint)wire);

    public ProtoEncoder RawVarint(ulong value)
    {
        while (value >= 0x80)
        {
            stream.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        stream.WriteByte((byte)value);
        return this;
    }

    /// <summary>int64 and int32 alike: a negative value takes ten bytes (two's complement), as protobuf writes it.</summary>
    public ProtoEncoder Varint(int field, long value) => Tag(field, 0).RawVarint(unchecked((ulong)value));

    public ProtoEncoder Float(int field, float value)
    {
        Tag(field, 5);
        Span<byte> bytes = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes, value);
        stream.Write(bytes);
        return this;
    }

    public ProtoEncoder Bytes(int field, ReadOnlySpan<byte> value)
    {
        Tag(field, 2).RawVarint((ulong)value.Length);
        stream.Write(value);
        return this;
    }

    public ProtoEncoder String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public ProtoEncoder Message(int field, Action<ProtoEncoder> write)
    {
        var inner = new ProtoEncoder();
        write(inner);
        return Bytes(field, inner.stream.GetBuffer().AsSpan(0, (int)inner.stream.Length));
    }

    public ProtoEncoder PackedVarints(int field, IEnumerable<long> values)
    {
        var inner = new ProtoEncoder();
        foreach (long v in values) inner.RawVarint(unchecked((ulong)v));
        return Bytes(field, inner.stream.GetBuffer().AsSpan(0, (int)inner.stream.Length));
    }
}
