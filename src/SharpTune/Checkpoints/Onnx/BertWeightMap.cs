using System.Text.RegularExpressions;

namespace SharpTune.Checkpoints.Onnx;

/// <summary>An initializer matched to a Hugging Face key.</summary>
/// <param name="Transpose">True when the initializer is stored (in, out) and must be transposed to HF's (out, in).</param>
/// <param name="Output">For a Linear weight, the graph value holding the layer's output (after its bias), for tracing onwards.</param>
internal sealed record MappedWeight(string Key, OnnxTensor Tensor, bool Transpose, string? Output)
{
    /// <summary>The shape the tensor has once in HF layout.</summary>
    public long[] HfShape => Transpose ? [.. Tensor.Dims.Reverse()] : Tensor.Dims;
}

/// <summary>
/// Matches the initializers of an ONNX export of a Hugging Face BERT to state-dict keys. torch.onnx keeps
/// the names of parameters used as they are (embeddings, LayerNorm, biases), optionally behind a prefix such
/// as <c>bert.</c>; but a Linear weight that the exporter transposed for <c>MatMul(x, W)</c> becomes an
/// anonymous constant (<c>927</c>, <c>onnx::MatMul_788</c>). Its key is found by tracing the graph:
/// MatMul -> Add(named <c>....bias</c>) gives <c>....weight</c>.
/// </summary>
internal static class BertWeightMap
{
    // The HF key inside an initializer name: everything from the first "embeddings.", "encoder.layer.N." or "pooler.".
    static readonly Regex HfKeyPattern = new(@"^(?:.*?\.)?((?:embeddings|encoder\.layer\.\d+|pooler)\..+)$", RegexOptions.CultureInvariant);

    /// <summary>The HF key an initializer name carries, or null for an anonymous one.</summary>
    public static string? HfKey(string name) => HfKeyPattern.Match(name) is { Success: true } m ? m.Groups[1].Value : null;

    /// <summary>
    /// Float tensors of two or more elements are the model's parameters; integer tensors (position_ids,
    /// reshape targets) and scalars (eps, sqrt(head size)) are part of the computation, not weights.
    /// </summary>
    public static bool LooksLikeWeight(OnnxTensor t) =>
        t.DataType is 1 or 10 or 11 or 16 && t.ElementCount > 1;  // FLOAT, FLOAT16, DOUBLE, BFLOAT16

    /// <summary>
    /// Maps every weight-like initializer to a key. Returns the mapped weights and, for the ones that could
    /// not be mapped, a line saying which and why.
    /// </summary>
    public static (Dictionary<string, MappedWeight> Mapped, List<string> Unmapped) Map(OnnxGraphIndex graph, string source)
    {
        var mapped = new Dictionary<string, MappedWeight>();
        var unmapped = new List<string>();
        void Add(MappedWeight w)
        {
            if (!mapped.TryAdd(w.Key, w))
                throw new InvalidDataException($"{source}: initializers '{mapped[w.Key].Tensor.Name}' and '{w.Tensor.Name}' both map to {w.Key}");
        }

        foreach (var tensor in graph.Graph.Initializers.Values.Where(LooksLikeWeight))
        {
            string? key = HfKey(tensor.Name);
            bool linearWeight = tensor.Dims.Length == 2 && !(key?.EndsWith("_embeddings.weight") ?? false);
            var linear = linearWeight ? TraceLinear(graph, tensor.Name) : null;
            if (key is not null && !linearWeight)
                Add(new MappedWeight(key, tensor, false, null));
            else if (key is not null && linear is not null && key != linear.Value.BiasKey[..^"bias".Length] + "weight")
                unmapped.Add($"'{tensor.Name}' {tensor.Shape}: named {key} but its layer adds the bias {linear.Value.BiasKey}");
            else if (linear is not null)
                // A named weight keeps its own name; an anonymous one takes its bias's name.
                Add(new MappedWeight(key ?? linear.Value.BiasKey[..^"bias".Length] + "weight", tensor, linear.Value.Transpose, linear.Value.Output));
            else
                unmapped.Add($"'{tensor.Name}' {tensor.Shape}: " + (key is null
                    ? "not used as a Linear weight by MatMul or Gemm followed by a named bias"
                    : "named like a Linear weight but not used by MatMul or Gemm, so its orientation is unknown"));
        }
        return (mapped, unmapped);
    }

    /// <summary>
    /// Follows a 2-D initializer to the MatMul or Gemm that uses it as the weight of a Linear layer with a
    /// named bias. The result says whether the stored tensor is (in, out) (so it needs transposing) and
    /// which value holds the layer's output.
    /// </summary>
    static (string BiasKey, bool Transpose, string Output)? TraceLinear(OnnxGraphIndex graph, string weight)
    {
        // A weight read by several nodes (tied weights) is not one Linear layer.
        if (graph.Consumers(weight) is not [var (node, input)]) return null;
        bool transposedInGraph = false;
        if (node is { OpType: "Transpose", Outputs.Length: 1 } && IsMatrixTranspose(node))
        {
            if (graph.Consumers(node.Outputs[0]) is not [var next]) return null;
            (node, input) = next;
            transposedInGraph = true;
        }
        if (input != 1) return null;

        bool operandIsInOut;  // the operand the op multiplies by, as it reaches the op
        string? biasKey = null, output = null;
        if (node is { OpType: "MatMul", Outputs.Length: 1 })
        {
            operandIsInOut = true;  // MatMul(x, W) = x @ W with x (..., in): W is (in, out)
            foreach (var (add, _) in graph.Consumers(node.Outputs[0]))
            {
                if (add is not { OpType: "Add", Inputs.Length: 2, Outputs.Length: 1 }) continue;
                string other = add.Inputs[0] == node.Outputs[0] ? add.Inputs[1] : add.Inputs[0];
                if (IsNamedBias(graph, other) is { } key) { biasKey = key; output = add.Outputs[0]; break; }
            }
        }
        else if (node is { OpType: "Gemm", Inputs.Length: 3, Outputs.Length: 1 } && node.Attribute("transA")?.I is null or 0)
        {
            operandIsInOut = node.Attribute("transB")?.I is null or 0;  // Gemm = A @ B' + C, B' = transB ? B^T : B
            biasKey = IsNamedBias(graph, node.Inputs[2]);
            output = node.Outputs[0];
        }
        else return null;

        if (biasKey is null || output is null) return null;
        return (biasKey, operandIsInOut != transposedInGraph, output);
    }

    static string? IsNamedBias(OnnxGraphIndex graph, string value) =>
        graph.Graph.Initializers.ContainsKey(value) && HfKey(value) is { } key && key.EndsWith(".bias") ? key : null;

    static bool IsMatrixTranspose(OnnxNode node) =>
        node.Attribute("perm") is not { } perm || perm.Ints is [1, 0];  // no perm reverses the axes
}
