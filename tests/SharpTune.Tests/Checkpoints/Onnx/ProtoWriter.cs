using System.Text;

namespace SharpTune.Tests.Checkpoints.Onnx;

/// <summary>
/// A tiny protobuf writer for building ONNX files in tests. It is deliberately independent of the reader
/// under test, and ONNX Runtime loading its output checks that both agree with the real format.
/// </summary>
internal sealed class ProtoWriter
{
    readonly MemoryStream stream = new();

    public byte[] ToArray() => stream.ToArray();

    public ProtoWriter Varint(int field, long value) { Tag(field, 0); RawVarint((ulong)value); return this; }

    public ProtoWriter Float(int field, float value)
    {
        Tag(field, 5);
        stream.Write(BitConverter.GetBytes(value));
        return this;
    }

    public ProtoWriter Bytes(int field, byte[] value)
    {
        Tag(field, 2);
        RawVarint((ulong)value.Length);
        stream.Write(value);
        return this;
    }

    public ProtoWriter String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public ProtoWriter Message(int field, Action<ProtoWriter> write)
    {
        var inner = new ProtoWriter();
        write(inner);
        return Bytes(field, inner.ToArray());
    }

    public ProtoWriter PackedVarints(int field, IEnumerable<long> values)
    {
        var inner = new ProtoWriter();
        foreach (long v in values) inner.RawVarint((ulong)v);
        return Bytes(field, inner.ToArray());
    }

    public ProtoWriter PackedFloats(int field, float[] values)
    {
        var bytes = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return Bytes(field, bytes);
    }

    /// <summary>Writes raw bytes as they are, for crafting malformed input.</summary>
    public ProtoWriter Raw(params byte[] bytes) { stream.Write(bytes); return this; }

    public ProtoWriter Tag(int field, int wire) { RawVarint(((ulong)field << 3) | (uint)wire); return this; }

    public ProtoWriter RawVarint(ulong value)
    {
        while (value >= 0x80)
        {
            stream.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        stream.WriteByte((byte)value);
        return this;
    }

    // --- ONNX messages (field numbers from onnx/onnx.proto) ---

    /// <summary>TensorProto: dims = 1, data_type = 2, float_data = 4, int64_data = 7, name = 8, raw_data = 9.</summary>
    public static Action<ProtoWriter> FloatTensor(string name, long[] dims, float[] values, bool raw = true) => w =>
    {
        w.PackedVarints(1, dims).Varint(2, 1);
        if (raw) w.PackedFloatsAsRaw(values); else w.PackedFloats(4, values);
        if (name.Length > 0) w.String(8, name);
    };

    public static Action<ProtoWriter> Int64Tensor(string name, long[] dims, long[] values) => w =>
    {
        w.PackedVarints(1, dims).Varint(2, 7).PackedVarints(7, values);
        if (name.Length > 0) w.String(8, name);
    };

    ProtoWriter PackedFloatsAsRaw(float[] values)
    {
        var bytes = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return Bytes(9, bytes);
    }

    /// <summary>NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5.</summary>
    public static Action<ProtoWriter> Node(string op, string name, string[] inputs, string[] outputs, params Action<ProtoWriter>[] attributes) => w =>
    {
        foreach (string i in inputs) w.String(1, i);
        foreach (string o in outputs) w.String(2, o);
        w.String(3, name).String(4, op);
        foreach (var a in attributes) w.Message(5, a);
    };

    /// <summary>AttributeProto: name = 1, f = 2, i = 3, t = 5, ints = 8, type = 20 (FLOAT 1, INT 2, TENSOR 4, INTS 7).</summary>
    public static Action<ProtoWriter> FloatAttr(string name, float f) => w => w.String(1, name).Float(2, f).Varint(20, 1);
    public static Action<ProtoWriter> IntAttr(string name, long i) => w => w.String(1, name).Varint(3, i).Varint(20, 2);
    public static Action<ProtoWriter> IntsAttr(string name, params long[] ints) => w => w.String(1, name).PackedVarints(8, ints).Varint(20, 7);
    public static Action<ProtoWriter> TensorAttr(string name, Action<ProtoWriter> tensor) => w => w.String(1, name).Message(5, tensor).Varint(20, 4);

    /// <summary>
    /// ValueInfoProto (name = 1, type = 2) of a tensor: TypeProto.tensor_type = 1 { elem_type = 1,
    /// shape = 2 { dim = 1 { dim_param = 2 } } }.
    /// </summary>
    public static Action<ProtoWriter> TensorValue(string name, int elemType, params string[] dims) => w => w
        .String(1, name)
        .Message(2, type => type.Message(1, tensor =>
        {
            tensor.Varint(1, elemType);
            if (dims.Length > 0) tensor.Message(2, shape => { foreach (string d in dims) shape.Message(1, dim => dim.String(2, d)); });
        }));
}
