using static SharpTune.Tests.Checkpoints.Onnx.ProtoWriter;

namespace SharpTune.Tests.Checkpoints.Onnx;

/// <summary>
/// Builds a small ONNX file laid out the way torch.onnx exports a Hugging Face BertModel: named embeddings,
/// LayerNorm and biases; anonymous Linear weights stored (in, out) for MatMul(x, W) + bias; Reshapes of
/// query/key/value to (B, T, heads, head_size); Erf GELU; a Gemm pooler. Attention itself is simplified
/// (q + k + v) since only the wiring matters to the importer; the file is still valid, runnable ONNX.
/// Odd sizes (vocab 99, hidden 32, 4 heads, intermediate 37) make shape mix-ups show.
/// </summary>
internal sealed record TinyBertOnnx
{
    public const int Vocab = 99, Hidden = 32, Layers = 2, Heads = 4, Intermediate = 37, MaxPositions = 16, TypeVocab = 2;

    /// <summary>Put in front of every named initializer, as a model wrapped in e.g. BertForX exports them.</summary>
    public string Prefix { get; init; } = "";
    /// <summary>A LayerNormalization op (opset 17) instead of the ReduceMean/Sub/Pow/Sqrt form of older exports.</summary>
    public bool LayerNormOp { get; init; }
    public float Eps { get; init; } = 1e-12f;
    /// <summary>Gemm transB of the pooler; null for a graph without pooler.</summary>
    public int? PoolerTransB { get; init; } = 1;
    public bool HeadReshapes { get; init; } = true;
    /// <summary>Adds an anonymous MatMul weight, <c>stray_weight</c>, with no bias after it.</summary>
    public bool StrayMatMul { get; init; }
    /// <summary>Renames named initializers (keys without prefix in, name out), to break the mapping.</summary>
    public Func<string, string> Rename { get; init; } = key => key;

    /// <summary>Every HF key with its values in HF layout and shape; filled by <see cref="Build"/>.</summary>
    public Dictionary<string, (float[] Values, long[] Shape)> Weights { get; } = [];

    public byte[] Build()
    {
        var random = new Random(7);
        var nodes = new List<Action<ProtoWriter>>();
        var initializers = new List<Action<ProtoWriter>>();
        int counter = 0;
        string Op(string op, string[] inputs, params Action<ProtoWriter>[] attributes)
        {
            string output = $"{op.ToLowerInvariant()}_{counter++}";
            nodes.Add(Node(op, $"{op}_{counter}", inputs, [output], attributes));
            return output;
        }
        string Scalar(float value) => Op("Constant", [], TensorAttr("value", FloatTensor("", [], [value])));
        float[] Values(string key, long[] shape, float mean = 0)
        {
            var values = Enumerable.Range(0, (int)shape.Aggregate(1L, (a, b) => a * b)).Select(_ => mean + (float)random.NextDouble() - 0.5f).ToArray();
            Weights[key] = (values, shape);
            return values;
        }
        string Param(string key, long[] shape, float mean = 0)
        {
            var values = Values(key, shape, mean);
            string name = Prefix + Rename(key);
            initializers.Add(FloatTensor(name, shape, values, raw: shape.Length > 1));  // 1-D ones exercise float_data
            return name;
        }
        string Linear(string x, string module, int inSize, int outSize)
        {
            var hf = Values(module + ".weight", [outSize, inSize]);  // (out, in)
            var stored = new float[hf.Length];                 // (in, out), as torch.onnx stores it for MatMul
            for (int o = 0; o < outSize; o++)
                for (int i = 0; i < inSize; i++)
                    stored[i * outSize + o] = hf[o * inSize + i];
            string anonymous = $"{900 + counter++}";
            initializers.Add(FloatTensor(anonymous, [inSize, outSize], stored));
            return Op("Add", [Param(module + ".bias", [outSize]), Op("MatMul", [x, anonymous])]);
        }
        string LayerNorm(string x, string module)
        {
            string weight = Param(module + ".weight", [Hidden], mean: 1), bias = Param(module + ".bias", [Hidden]);
            if (LayerNormOp) return Op("LayerNormalization", [x, weight, bias], FloatAttr("epsilon", Eps), IntAttr("axis", -1));
            string centered = Op("Sub", [x, Op("ReduceMean", [x], IntsAttr("axes", -1))]);
            string variance = Op("ReduceMean", [Op("Pow", [centered, Scalar(2)])], IntsAttr("axes", -1));
            string normed = Op("Div", [centered, Op("Sqrt", [Op("Add", [variance, Scalar(Eps)])])]);
            return Op("Add", [Op("Mul", [normed, weight]), bias]);
        }

        initializers.Add(Int64Tensor("split_heads", [4], [0, 0, Heads, Hidden / Heads]));
        initializers.Add(Int64Tensor("merge_heads", [3], [0, 0, Hidden]));
        string h = Op("Add", [
            Op("Add", [
                Op("Gather", [Param("embeddings.word_embeddings.weight", [Vocab, Hidden]), "input_ids"]),
                Op("Gather", [Param("embeddings.token_type_embeddings.weight", [TypeVocab, Hidden]), "token_type_ids"])]),
            Op("Gather", [Param("embeddings.position_embeddings.weight", [MaxPositions, Hidden]), "position_ids"])]);
        h = LayerNorm(h, "embeddings.LayerNorm");
        for (int l = 0; l < Layers; l++)
        {
            string p = $"encoder.layer.{l}.";
            var qkv = new[] { "query", "key", "value" }.Select(name =>
            {
                string projected = Linear(h, $"{p}attention.self.{name}", Hidden, Hidden);  // (B, T, H)
                if (!HeadReshapes) return projected;
                string split = Op("Reshape", [projected, "split_heads"]);                   // (B, T, heads, head_size)
                return Op("Reshape", [split, "merge_heads"]);                               // (B, T, H)
            }).ToList();
            string attention = Linear(Op("Add", [Op("Add", [qkv[0], qkv[1]]), qkv[2]]), $"{p}attention.output.dense", Hidden, Hidden);
            h = LayerNorm(Op("Add", [attention, h]), $"{p}attention.output.LayerNorm");
            string inner = Linear(h, $"{p}intermediate.dense", Hidden, Intermediate);      // (B, T, I)
            string gelu = Op("Mul", [Op("Mul", [inner, Op("Add", [Op("Erf", [Op("Div", [inner, Scalar(MathF.Sqrt(2))])]), Scalar(1)])]), Scalar(0.5f)]);
            h = LayerNorm(Op("Add", [Linear(gelu, $"{p}output.dense", Intermediate, Hidden), h]), $"{p}output.LayerNorm");
        }
        nodes.Add(Node("Identity", "Identity_out", [h], ["last_hidden_state"]));
        var outputs = new List<Action<ProtoWriter>> { TensorValue("last_hidden_state", 1) };

        if (PoolerTransB is { } transB)
        {
            string first = Op("Gather", [h, Op("Constant", [], TensorAttr("value", Int64Tensor("", [], [0])))], IntAttr("axis", 1));  // (B, H)
            // The pooler's weight keeps its name. Gemm with transB = 1 reads it (out, in) as HF stores it;
            // with transB = 0 it must be stored (in, out).
            var hf = Values("pooler.dense.weight", [Hidden, Hidden]);
            string weight = Prefix + Rename("pooler.dense.weight");
            initializers.Add(FloatTensor(weight, [Hidden, Hidden], transB == 1 ? hf : [.. Enumerable.Range(0, hf.Length).Select(k => hf[(k % Hidden) * Hidden + k / Hidden])]));
            string pooled = Op("Gemm", [first, weight, Param("pooler.dense.bias", [Hidden])], FloatAttr("alpha", 1), FloatAttr("beta", 1), IntAttr("transB", transB));
            nodes.Add(Node("Tanh", "Tanh_pooler", [pooled], ["pooler_output"]));
            outputs.Add(TensorValue("pooler_output", 1));
        }
        if (StrayMatMul)
        {
            initializers.Add(FloatTensor("stray_weight", [Hidden, 5], new float[Hidden * 5]));
            nodes.Add(Node("MatMul", "MatMul_stray", [h, "stray_weight"], ["stray_output"]));
            outputs.Add(TensorValue("stray_output", 1));
        }

        // ModelProto: ir_version = 1, producer_name = 2, opset_import = 8 { domain = 1, version = 2 }, graph = 7.
        // GraphProto: node = 1, name = 2, initializer = 5, input = 11, output = 12. The graph goes last so
        // that cutting the file anywhere leaves it incomplete.
        return new ProtoWriter()
            .Varint(1, 8).String(2, "tiny-bert-test")
            .Message(8, opset => opset.String(1, "").Varint(2, 17))
            .Message(7, graph =>
            {
                foreach (var node in nodes) graph.Message(1, node);
                graph.String(2, "tiny_bert");
                foreach (var init in initializers) graph.Message(5, init);
                foreach (string input in new[] { "input_ids", "token_type_ids", "position_ids" })
                    graph.Message(11, TensorValue(input, 7, "batch", "sequence"));
                foreach (var output in outputs) graph.Message(12, output);
            })
            .ToArray();
    }
}
