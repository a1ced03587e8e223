using System.Runtime.InteropServices;

namespace SharpTune.Checkpoints.Onnx;

/// <summary>TensorProto.DataType values we decode (onnx/onnx.proto); other types are kept without data.</summary>
internal enum OnnxDataType { Undefined = 0, Float = 1, Int32 = 6, Int64 = 7 }

/// <summary>
/// A decoded TensorProto. FLOAT data lands in <see cref="Floats"/>, INT32 and INT64 in <see cref="Ints"/>;
/// a tensor of any other type has neither, and a reader that needs its values reports it.
/// </summary>
internal sealed record OnnxTensor(string Name, long[] Dims, int DataType, float[]? Floats, long[]? Ints)
{
    public long ElementCount => Dims.Aggregate(1L, (a, b) => a * b);
    public string Shape => $"[{string.Join(", ", Dims)}]";
}

/// <summary>An AttributeProto with the fields a BERT graph uses: f, i, s, t, floats, ints.</summary>
internal sealed record OnnxAttribute(string Name, float? F, long? I, string? S, OnnxTensor? T, float[] Floats, long[] Ints);

internal sealed record OnnxNode(string Name, string OpType, string Domain, string[] Inputs, string[] Outputs, OnnxAttribute[] Attributes)
{
    public OnnxAttribute? Attribute(string name) => Attributes.FirstOrDefault(a => a.Name == name);
}

/// <summary>The main graph: nodes in topological order, initializers by name, graph input and output names.</summary>
internal sealed record OnnxGraph(
    IReadOnlyList<OnnxNode> Nodes, IReadOnlyDictionary<string, OnnxTensor> Initializers,
    IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs);

/// <summary>
/// Decodes just enough of an ONNX ModelProto to read a model's weights and trace its graph. Field numbers
/// follow onnx/onnx.proto: ModelProto.graph = 7; GraphProto node = 1, initializer = 5, input = 11,
/// output = 12; NodeProto input = 1, output = 2, name = 3, op_type = 4, attribute = 5, domain = 7;
/// AttributeProto name = 1, f = 2, i = 3, s = 4, t = 5, floats = 7, ints = 8; TensorProto dims = 1,
/// data_type = 2, segment = 3, float_data = 4, int32_data = 5, int64_data = 7, name = 8, raw_data = 9,
/// external_data = 13, data_location = 14; ValueInfoProto name = 1.
/// </summary>
internal sealed record OnnxModel(string ProducerName, string ProducerVersion, long IrVersion, OnnxGraph Graph)
{
    /// <summary>Parses <paramref name="bytes"/>; <paramref name="source"/> names the file in error messages.</summary>
    public static OnnxModel Parse(ReadOnlySpan<byte> bytes, string source)
    {
        var reader = new ProtoReader(bytes, source, "ModelProto");
        string producer = "", version = "";
        long ir = 0;
        OnnxGraph? graph = null;
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadTag();
            switch (field)
            {
                case 1: reader.Expect(wire, WireType.Varint, "ir_version"); ir = reader.ReadInt64(); break;
                case 2: reader.Expect(wire, WireType.Len, "producer_name"); producer = reader.ReadString(); break;
                case 3: reader.Expect(wire, WireType.Len, "producer_version"); version = reader.ReadString(); break;
                case 7:
                    reader.Expect(wire, WireType.Len, "graph");
                    var inner = reader.ReadMessage("GraphProto");
                    graph = ReadGraph(ref inner, source);
                    break;
                default: reader.Skip(wire); break;
            }
        }
        if (graph is null) throw new InvalidDataException($"{source}: not an ONNX model (no graph found)");
        return new OnnxModel(producer, version, ir, graph);
    }

    static OnnxGraph ReadGraph(ref ProtoReader reader, string source)
    {
        var nodes = new List<OnnxNode>();
        var initializers = new Dictionary<string, OnnxTensor>();
        var inputs = new List<string>();
        var outputs = new List<string>();
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadTag();
            if (field is 1 or 5 or 11 or 12) reader.Expect(wire, WireType.Len, $"GraphProto field {field}");
            switch (field)
            {
                case 1: { var r = reader.ReadMessage("NodeProto"); nodes.Add(ReadNode(ref r)); break; }
                case 5:
                {
                    var r = reader.ReadMessage("TensorProto");
                    var tensor = ReadTensor(ref r);
                    if (!initializers.TryAdd(tensor.Name, tensor))
                        throw new InvalidDataException($"{source}: two initializers are named '{tensor.Name}'");
                    break;
                }
                case 11: { var r = reader.ReadMessage("ValueInfoProto"); inputs.Add(ReadValueInfoName(ref r)); break; }
                case 12: { var r = reader.ReadMessage("ValueInfoProto"); outputs.Add(ReadValueInfoName(ref r)); break; }
                default: reader.Skip(wire); break;
            }
        }
        return new OnnxGraph(nodes, initializers, inputs, outputs);
    }

    static string ReadValueInfoName(ref ProtoReader reader)
    {
        string name = "";
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadTag();
            if (field == 1) { reader.Expect(wire, WireType.Len, "name"); name = reader.ReadString(); }
            else reader.Skip(wire);
        }
        return name;
    }

    static OnnxNode ReadNode(ref ProtoReader reader)
    {
        var inputs = new List<string>();
        var outputs = new List<string>();
        var attributes = new List<OnnxAttribute>();
        string name = "", opType = "", domain = "";
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadTag();
            if (field is 1 or 2 or 3 or 4 or 5 or 7) reader.Expect(wire, WireType.Len, $"NodeProto field {field}");
            switch (field)
            {
                case 1: inputs.Add(reader.ReadString()); break;
                case 2: outputs.Add(reader.ReadString()); break;
                case 3: name = reader.ReadString(); break;
                case 4: opType = reader.ReadString(); break;
                case 5: { var r = reader.ReadMessage("AttributeProto"); attributes.Add(ReadAttribute(ref r)); break; }
                case 7: domain = reader.ReadString(); break;
                default: reader.Skip(wire); break;
            }
        }
        return new OnnxNode(name, opType, domain, [.. inputs], [.. outputs], [.. attributes]);
    }

    static OnnxAttribute ReadAttribute(ref ProtoReader reader)
    {
        string name = "";
        float? f = null;
        long? i = null;
        string? s = null;
        OnnxTensor? t = null;
        var floats = new List<float>();
        var ints = new List<long>();
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadTag();
            switch (field)
            {
                case 1: reader.Expect(wire, WireType.Len, "name"); name = reader.ReadString(); break;
                case 2: reader.Expect(wire, WireType.Fixed32, "f"); f = reader.ReadFloat(); break;
                case 3: reader.Expect(wire, WireType.Varint, "i"); i = reader.ReadInt64(); break;
                // s is bytes, not necessarily text; only small strings (e.g. "NOTSET") matter here.
                case 4: reader.Expect(wire, WireType.Len, "s"); s = System.Text.Encoding.UTF8.GetString(reader.ReadBytes()); break;
                case 5: { reader.Expect(wire, WireType.Len, "t"); var r = reader.ReadMessage("TensorProto"); t = ReadTensor(ref r); break; }
                case 7: reader.ReadFloats(wire, floats); break;
                case 8: reader.ReadVarints(wire, ints); break;
                default: reader.Skip(wire); break;
            }
        }
        return new OnnxAttribute(name, f, i, s, t, [.. floats], [.. ints]);
    }

    static OnnxTensor ReadTensor(ref ProtoReader reader)
    {
        var dims = new List<long>();
        int dataType = 0;
        string name = "";
        var floatData = new List<float>();
        var intData = new List<long>();  // int32_data or int64_data, whichever the type uses
        ReadOnlySpan<byte> raw = default;
        bool hasRaw = false;
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadTag();
            switch (field)
            {
                case 1: reader.ReadVarints(wire, dims); break;
                case 2: reader.Expect(wire, WireType.Varint, "data_type"); dataType = reader.ReadInt32(); break;
                case 3: throw reader.Error("segmented tensors are not supported");
                case 4: reader.ReadFloats(wire, floatData); break;
                case 5 or 7: reader.ReadVarints(wire, intData); break;
                case 8: reader.Expect(wire, WireType.Len, "name"); name = reader.ReadString(); break;
                case 9: reader.Expect(wire, WireType.Len, "raw_data"); raw = reader.ReadBytes(); hasRaw = true; break;
                case 13: throw reader.Error("tensor data in an external file is not supported; export with the weights inside the .onnx file");
                case 14:
                    reader.Expect(wire, WireType.Varint, "data_location");
                    if (reader.ReadInt64() != 0) throw reader.Error("tensor data in an external file is not supported");
                    break;
                default: reader.Skip(wire); break;
            }
        }

        // Check the element count before any allocation: a corrupt dims field may claim 2^60 elements.
        long count = 1;
        foreach (long d in dims)
        {
            if (d < 0 || d > int.MaxValue) throw reader.Error($"tensor '{name}' has invalid dimension {d}");
            if (d > 0 && count > Array.MaxLength / d) throw reader.Error($"tensor '{name}' shape [{string.Join(", ", dims)}] is too large");
            count *= d;
        }
        string shape = $"[{string.Join(", ", dims)}]";
        int elementSize = (OnnxDataType)dataType switch { OnnxDataType.Float => 4, OnnxDataType.Int32 => 4, OnnxDataType.Int64 => 8, _ => 0 };
        if (elementSize == 0) return new OnnxTensor(name, [.. dims], dataType, null, null);
        if (hasRaw && raw.Length != count * elementSize)
            throw reader.Error($"tensor '{name}' shape {shape} needs {count * elementSize} bytes of raw_data, found {raw.Length}");
        if (!hasRaw && (dataType == (int)OnnxDataType.Float ? floatData.Count : intData.Count) != count)
            throw reader.Error($"tensor '{name}' shape {shape} needs {count} values, found {(dataType == 1 ? floatData.Count : intData.Count)}");

        // raw_data is little-endian by the spec, as is every platform .NET runs TorchSharp on.
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX raw_data needs a little-endian machine");
        return (OnnxDataType)dataType switch
        {
            OnnxDataType.Float => new OnnxTensor(name, [.. dims], dataType, hasRaw ? MemoryMarshal.Cast<byte, float>(raw).ToArray() : [.. floatData], null),
            OnnxDataType.Int64 => new OnnxTensor(name, [.. dims], dataType, null, hasRaw ? MemoryMarshal.Cast<byte, long>(raw).ToArray() : [.. intData]),
            _ => new OnnxTensor(name, [.. dims], dataType, null,
                hasRaw ? Array.ConvertAll(MemoryMarshal.Cast<byte, int>(raw).ToArray(), v => (long)v) : intData.Select(v => (long)(int)v).ToArray()),
        };
    }
}
