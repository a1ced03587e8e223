namespace SharpTune.Checkpoints.Onnx;

/// <summary>
/// The parts of a BERT configuration that no weight's shape tells, read from the graph's operators:
/// heads from the Reshape that splits them, layer-norm eps, and the intermediate activation.
/// </summary>
internal static class GraphFacts
{
    /// <summary>
    /// HF BertSelfAttention reshapes each query/key/value projection (B, T, H) to (B, T, heads, H / heads);
    /// the exporter writes the target shape as a constant or a Concat of dynamic sizes and constants, e.g.
    /// [0, 0, 12, 32] or Concat(B, T, [12], [32]). The heads given by the caller win, but must agree.
    /// </summary>
    public static int AttentionHeads(OnnxGraphIndex graph, Dictionary<string, MappedWeight> mapped, int layers, int hidden,
        int? given, string source, List<string> notes)
    {
        var found = new SortedSet<long>();
        for (int l = 0; l < layers; l++)
            foreach (string qkv in new[] { "query", "key", "value" })
            {
                if (!mapped.TryGetValue($"encoder.layer.{l}.attention.self.{qkv}.weight", out var w) || w.Output is null) continue;
                foreach (var (reshape, input) in graph.Consumers(w.Output))
                    if (reshape.OpType == "Reshape" && input == 0 && reshape.Inputs.Length == 2
                        && HeadsOf(graph.ShapeValues(reshape.Inputs[1]), hidden) is { } heads)
                        found.Add(heads);
            }
        if (found.Count > 1)
            throw new InvalidDataException($"{source}: the attention Reshapes disagree on the number of heads ({string.Join(", ", found)})");
        long? inferred = found.Count == 1 ? found.Min : null;
        if (given is { } g)
        {
            if (inferred is { } i && i != g)
                throw new InvalidDataException($"{source}: {g} attention heads were asked for, but the graph splits {hidden} into {i} heads");
            notes.Add(inferred is null ? $"num_attention_heads {g} as given (the graph does not show it)" : $"num_attention_heads {g} as given, matching the graph");
            return g;
        }
        if (inferred is null)
            throw new InvalidDataException(
                $"{source}: cannot infer num_attention_heads: no Reshape to (..., heads, head_size) follows the query/key/value projections; pass the number of heads");
        notes.Add($"num_attention_heads {inferred} from the attention Reshape");
        return (int)inferred;
    }

    /// <summary>Heads from the last two entries of a reshape target: (heads, head_size), either may be -1.</summary>
    static long? HeadsOf(long?[]? shape, int hidden)
    {
        if (shape is not [.., var heads, var size]) return null;
        if (heads is > 0 && size is > 0) return heads * size == hidden ? heads : null;
        if (heads is > 0 && size == -1) return hidden % heads == 0 ? heads : null;
        if (heads == -1 && size is > 0) return hidden % size == 0 && size != hidden ? hidden / size : null;
        return null;
    }

    /// <summary>
    /// eps from LayerNormalization's epsilon attribute (default 1e-5 by the ONNX spec), or, in a layer norm
    /// the exporter decomposed, from the constant in Sqrt(ReduceMean((x - mean)^2) + eps).
    /// </summary>
    public static double LayerNormEps(OnnxGraphIndex graph, string source, List<string> notes)
    {
        var found = new SortedSet<double>();
        foreach (var node in graph.Graph.Nodes)
        {
            if (node.OpType == "LayerNormalization")
                found.Add(node.Attribute("epsilon")?.F is { } f ? OnnxGraphIndex.ShortestDouble(f) : 1e-5);
            else if (node is { OpType: "Sqrt", Inputs: [var variance] } && graph.Producer(variance) is { OpType: "Add", Inputs: [var a, var b] })
            {
                if (graph.Producer(a) is { OpType: "ReduceMean" } && graph.ScalarFloat(b) is { } eps1) found.Add(eps1);
                else if (graph.Producer(b) is { OpType: "ReduceMean" } && graph.ScalarFloat(a) is { } eps2) found.Add(eps2);
            }
        }
        if (found.Count > 1)
            throw new InvalidDataException($"{source}: layer norms use different eps ({string.Join(", ", found)}); BertConfig has one layer_norm_eps");
        if (found.Count == 0)
        {
            notes.Add("no layer norm eps found in the graph; assuming 1e-12 (the BERT default)");
            return 1e-12;
        }
        notes.Add($"layer_norm_eps {found.Min} from the graph");
        return found.Min;
    }

    /// <summary>
    /// The activation between intermediate.dense and output.dense in layer 0: Erf means exact gelu (HF "gelu"),
    /// Tanh the tanh approximation, Relu relu, Sigmoid silu. Walks forward from the intermediate output to the
    /// next MatMul or Gemm.
    /// </summary>
    public static string HiddenAct(OnnxGraphIndex graph, Dictionary<string, MappedWeight> mapped, List<string> notes)
    {
        var ops = new HashSet<string>();
        var seen = new HashSet<string>();
        var queue = new Queue<string>();
        if (mapped.GetValueOrDefault("encoder.layer.0.intermediate.dense.weight")?.Output is { } start) queue.Enqueue(start);
        while (queue.Count > 0 && seen.Count < 64)  // a GELU is a handful of nodes; the bound stops a runaway walk
        {
            foreach (var (node, _) in graph.Consumers(queue.Dequeue()))
            {
                if (node.OpType is "MatMul" or "Gemm" || !seen.Add(node.Outputs.FirstOrDefault() ?? "")) continue;
                ops.Add(node.OpType == "Gelu" && node.Attribute("approximate")?.S == "tanh" ? "Tanh" : node.OpType);
                foreach (string output in node.Outputs) queue.Enqueue(output);
            }
        }
        string? act = ops.Contains("Erf") || ops.Contains("Gelu") ? "gelu"
            : ops.Contains("Tanh") || ops.Contains("FastGelu") ? "gelu_new"
            : ops.Contains("Relu") ? "relu"
            : ops.Contains("Sigmoid") ? "silu"
            : null;
        notes.Add(act is null ? "could not identify the activation; assuming gelu" : $"hidden_act {act} (the graph uses {string.Join(", ", ops.Order())})");
        return act ?? "gelu";
    }
}
