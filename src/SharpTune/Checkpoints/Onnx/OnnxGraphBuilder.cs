using System.Globalization;

namespace SharpTune.Checkpoints.Onnx;

/// <summary>
/// Collects an ONNX graph op by op for <see cref="OnnxWriter"/>: each <see cref="Op"/> call appends one node in
/// topological order and returns the name of its output, so a model's forward pass reads as the graph it writes.
/// Node and value names carry the module path they come from (<c>encoder.layer.0.attention.self/MatMul_12</c>), as
/// torch.onnx names them, so a graph viewer shows where each op belongs.
/// </summary>
internal sealed class OnnxGraphBuilder(int opset)
{
    readonly List<OnnxNode> nodes = [];
    readonly List<OnnxTensor> initializers = [];
    readonly List<OnnxValueInfo> inputs = [];
    readonly List<OnnxValueInfo> outputs = [];
    readonly HashSet<string> names = new(StringComparer.Ordinal);
    readonly Dictionary<string, string> constants = new(StringComparer.Ordinal);
    int counter;

    public int Opset { get; } = opset;

    /// <summary>A graph input; returns its name.</summary>
    public string Input(string name, OnnxDataType type, params OnnxDim[] shape)
    {
        Claim(name);
        inputs.Add(new OnnxValueInfo(name, type, shape));
        return name;
    }

    /// <summary>Makes <paramref name="value"/> a graph output called <paramref name="name"/> (through an Identity when the names differ).</summary>
    public void Output(string value, string name, OnnxDataType type, params OnnxDim[] shape)
    {
        if (value != name)
        {
            Claim(name);
            nodes.Add(new OnnxNode(name, "Identity", "", [value], [name], []));
        }
        outputs.Add(new OnnxValueInfo(name, type, shape));
    }

    /// <summary>A named float initializer (a weight); returns its name.</summary>
    public string Weight(string name, long[] dims, float[] values)
    {
        Claim(name);
        initializers.Add(new OnnxTensor(name, dims, (int)OnnxDataType.Float, values, null));
        return name;
    }

    /// <summary>A float scalar constant, shared by every op that uses the same value.</summary>
    public string Scalar(float value) =>
        Constant($"f:{value.ToString("R", CultureInfo.InvariantCulture)}", () => new OnnxTensor("", [], (int)OnnxDataType.Float, [value], null));

    /// <summary>An int64 constant of shape [values.Length] (or a scalar), shared by every op that uses the same values.</summary>
    public string Ints(long[] values, bool scalar = false) =>
        Constant($"i{(scalar ? "s" : "")}:{string.Join(",", values)}",
            () => new OnnxTensor("", scalar ? [] : [values.Length], (int)OnnxDataType.Int64, null, values));

    string Constant(string key, Func<OnnxTensor> make)
    {
        if (constants.TryGetValue(key, out string? name)) return name;
        name = $"const_{constants.Count}";
        Claim(name);
        initializers.Add(make() with { Name = name });
        constants[key] = name;
        return name;
    }

    /// <summary>Appends one node of <paramref name="opType"/> under <paramref name="scope"/>; returns its (single) output.</summary>
    public string Op(string opType, string scope, string[] operands, params OnnxAttribute[] attributes)
    {
        string name = $"{scope}/{opType}_{counter++}";
        Claim(name);
        nodes.Add(new OnnxNode(name, opType, "", operands, [name], attributes));
        return name;
    }

    public static OnnxAttribute Int(string name, long value) => new(name, null, value, null, null, [], []);
    public static OnnxAttribute Float(string name, float value) => new(name, value, null, null, null, [], []);
    public static OnnxAttribute IntList(string name, params long[] values) => new(name, null, null, null, null, [], values);

    public OnnxModelDefinition Build(string graphName, IReadOnlyDictionary<string, string> metadata, string docString = "")
    {
        if (outputs.Count == 0) throw new InvalidOperationException("the graph has no outputs");
        return new OnnxModelDefinition(graphName, nodes.ToList(), initializers.ToList(), inputs.ToList(), outputs.ToList(), Opset, metadata, docString);
    }

    void Claim(string name)
    {
        if (!names.Add(name)) throw new InvalidOperationException($"the graph already has a value named '{name}'");
    }
}
