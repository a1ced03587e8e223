using System.Globalization;

namespace SharpTune.Checkpoints.Onnx;

/// <summary>
/// Lookups over an <see cref="OnnxGraph"/> for tracing it: which node makes a value, which nodes read it,
/// and what a value is when it is a constant (an initializer or the output of a Constant node).
/// </summary>
internal sealed class OnnxGraphIndex
{
    readonly Dictionary<string, OnnxNode> producers = [];
    readonly Dictionary<string, List<(OnnxNode Node, int Input)>> consumers = [];
    readonly Dictionary<string, OnnxTensor> constants = [];

    public OnnxGraph Graph { get; }

    public OnnxGraphIndex(OnnxGraph graph, string source)
    {
        Graph = graph;
        foreach (var (name, tensor) in graph.Initializers) constants[name] = tensor;
        foreach (var node in graph.Nodes)
        {
            foreach (var output in node.Outputs.Where(o => o.Length > 0))
                if (!producers.TryAdd(output, node))
                    throw new InvalidDataException($"{source}: value '{output}' is produced by two nodes ('{producers[output].Name}' and '{node.Name}')");
            for (int i = 0; i < node.Inputs.Length; i++)
            {
                if (node.Inputs[i].Length == 0) continue;  // an omitted optional input
                if (!consumers.TryGetValue(node.Inputs[i], out var list)) consumers[node.Inputs[i]] = list = [];
                list.Add((node, i));
            }
            if (node.OpType == "Constant" && node.Outputs.Length == 1 && ConstantNodeValue(node) is { } value)
                constants[node.Outputs[0]] = value;
        }
    }

    public OnnxNode? Producer(string value) => producers.GetValueOrDefault(value);

    public IReadOnlyList<(OnnxNode Node, int Input)> Consumers(string value) =>
        consumers.TryGetValue(value, out var list) ? list : [];

    public OnnxTensor? Constant(string value) => constants.GetValueOrDefault(value);

    /// <summary>The value of a one-element float constant, or null when <paramref name="value"/> is not one.</summary>
    public double? ScalarFloat(string value)
    {
        return Constant(value) is { Floats: [float f] } ? ShortestDouble(f) : null;
    }

    /// <summary>
    /// Exports store eps as float32; going through its shortest decimal form keeps 1e-12 as 1e-12 rather
    /// than 9.9999999600419720e-13, so a config written from it matches the original.
    /// </summary>
    public static double ShortestDouble(float f) =>
        double.Parse(f.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    /// <summary>
    /// The target shape of a Reshape as far as constants reveal it: a constant gives every entry; a Concat
    /// of pieces (dynamic batch and sequence sizes next to constant head sizes) gives null for unknown entries.
    /// </summary>
    public long?[]? ShapeValues(string value)
    {
        if (Constant(value) is { Ints: { } ints }) return [.. ints.Select(v => (long?)v)];
        if (Producer(value) is not { OpType: "Concat" } concat) return null;
        var entries = new List<long?>();
        foreach (string piece in concat.Inputs)
        {
            if (Constant(piece) is { Ints: { } part }) entries.AddRange(part.Select(v => (long?)v));
            else if (Producer(piece) is { OpType: "Unsqueeze" }) entries.Add(null);  // one dynamic entry
            else return null;  // a piece of unknown length: positions after it are unknown
        }
        return [.. entries];
    }

    /// <summary>
    /// A Constant node's value: the tensor in <c>value</c>, or the scalar/list forms
    /// (<c>value_float</c>, <c>value_floats</c>, <c>value_int</c>, <c>value_ints</c>) that newer opsets allow.
    /// </summary>
    static OnnxTensor? ConstantNodeValue(OnnxNode node)
    {
        string name = node.Outputs[0];
        foreach (var a in node.Attributes)
        {
            switch (a.Name)
            {
                case "value" when a.T is not null: return a.T with { Name = name };
                case "value_float" when a.F is { } f: return new OnnxTensor(name, [], (int)OnnxDataType.Float, [f], null);
                case "value_floats": return new OnnxTensor(name, [a.Floats.Length], (int)OnnxDataType.Float, a.Floats, null);
                case "value_int" when a.I is { } i: return new OnnxTensor(name, [], (int)OnnxDataType.Int64, null, [i]);
                case "value_ints": return new OnnxTensor(name, [a.Ints.Length], (int)OnnxDataType.Int64, null, a.Ints);
            }
        }
        return null;
    }
}
