using SharpTune.Checkpoints.Onnx;
using static SharpTune.Checkpoints.Onnx.OnnxGraphBuilder;
using static TorchSharp.torch;

namespace SharpTune.Models.Bert.Onnx;

/// <summary>
/// A <see cref="BertModel"/> written as an ONNX graph of standard ops (opset 17: Gather, MatMul, Add, Mul,
/// LayerNormalization, Softmax, Erf, ...), laid out as Hugging Face's optimum exports a BERT: int64 inputs
/// <c>input_ids</c>, <c>attention_mask</c>, <c>token_type_ids</c> of shape (<c>batch</c>, <c>sequence</c>), both axes
/// dynamic. The forward pass follows <see cref="BertModel.forward"/> step by step; the caller adds what sits on top
/// (pooling, normalisation, a classifier) with <see cref="Pool"/>, <see cref="Normalize"/> and <see cref="Linear"/>,
/// then names the outputs. A prompt method's virtual tokens (input-side prompts or per-layer key/value prefixes) do not
/// depend on the input once trained, so they are written in as constants (<see cref="OnnxPrompt"/>).
/// </summary>
/// <remarks>
/// Weights keep their Hugging Face keys behind <c>prefix</c> (<c>bert.encoder.layer.0.attention.self.query.weight</c>);
/// a Linear weight is stored (in, out) for <c>MatMul(x, W)</c> and followed by <c>Add</c> of its named bias, as
/// torch.onnx writes it, so <see cref="OnnxBertImporter"/> reads an exported file back. Every parameter of the model
/// must land in the graph: a parameter left over (an adapter that was not merged) is an error, not a silent omission.
/// </remarks>
/// <summary>
/// A prompt method's virtual tokens as the graph takes them, computed once from the trained module: input-side prompt
/// vectors (P, H) put in front of the word embeddings, or one key/value prefix per layer, each (1, N, P, D).
/// </summary>
internal sealed record OnnxPrompt(Tensor? Embeddings, IReadOnlyList<KeyValuePrefix>? Prefixes);

internal sealed class BertOnnxGraph
{
    public const int Opset = 17;
    public static readonly OnnxDim Batch = OnnxDim.Dynamic("batch");
    public static readonly OnnxDim Sequence = OnnxDim.Dynamic("sequence");

    readonly OnnxGraphBuilder graph = new(Opset);
    readonly Dictionary<string, Tensor> weights;
    readonly HashSet<string> used = new(StringComparer.Ordinal);
    readonly string prefix;
    string prefixBatch = ""; // [B, 1, 1, 1]: tiles a prefix over the batch

    BertOnnxGraph(BertModel model, string prefix, OnnxPrompt? prompt)
    {
        Config = model.Config;
        this.prefix = prefix;
        this.prompt = prompt;
        weights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        InputIds = graph.Input("input_ids", OnnxDataType.Int64, Batch, Sequence);
        AttentionMask = graph.Input("attention_mask", OnnxDataType.Int64, Batch, Sequence);
        TokenTypeIds = graph.Input("token_type_ids", OnnxDataType.Int64, Batch, Sequence);
    }

    readonly OnnxPrompt? prompt;

    public BertConfig Config { get; }
    public OnnxGraphBuilder Graph => graph;
    public string InputIds { get; }
    public string AttentionMask { get; }
    public string TokenTypeIds { get; }

    /// <summary>Positions in front of the real [CLS] (an input-side prompt's P); the real tokens start there.</summary>
    public int VirtualTokens => prompt?.Embeddings is { } embeddings ? (int)embeddings.shape[0] : 0;

    /// <summary>(batch, sequence, hidden): the real tokens' states (virtual positions left out).</summary>
    public string LastHiddenState { get; private set; } = "";

    /// <summary>(batch, hidden): [CLS] through the pooler, or null for a model without one.</summary>
    public string? PooledOutput { get; private set; }

    /// <summary>The encoder's graph: embeddings, every layer and the pooler, from <paramref name="model"/>'s weights (fp32).</summary>
    /// <param name="prefix">Put in front of every weight's name (<c>bert.</c> inside a task model).</param>
    /// <param name="prompt">A prompt method's virtual tokens, written into the graph as constants.</param>
    public static BertOnnxGraph Encode(BertModel model, string prefix = "", OnnxPrompt? prompt = null)
    {
        if (prompt?.Prefixes is { } prefixes && prefixes.Count != model.Config.NumHiddenLayers)
            throw new ArgumentException($"Expected {model.Config.NumHiddenLayers} layer prefixes, got {prefixes.Count}.");
        var encoder = new BertOnnxGraph(model, prefix, prompt);
        encoder.Build(model.HasPooler);
        return encoder;
    }

    void Build(bool hasPooler)
    {
        using var scope = NewDisposeScope();
        int virtualTokens = VirtualTokens;
        // Embeddings (BertEmbeddings.forward): word + position + token type, then LayerNorm.
        string words = graph.Op("Gather", "embeddings.word_embeddings", [Named("embeddings.word_embeddings.weight"), InputIds]); // (B, T, H)
        string length = graph.Op("Shape", "embeddings", [InputIds], Int("start", 1), Int("end", 2)); // [T]
        string batch = graph.Op("Shape", "embeddings", [InputIds], Int("start", 0), Int("end", 1)); // [B]
        var positionTable = Take("embeddings.position_embeddings.weight");
        var typeTable = Take("embeddings.token_type_embeddings.weight");
        string positionName = graph.Weight(prefix + "embeddings.position_embeddings.weight", [.. positionTable.shape], Values(positionTable));
        string end = virtualTokens == 0 ? length : graph.Op("Add", "embeddings", [length, graph.Ints([virtualTokens])]);
        string positions = graph.Op("Slice", "embeddings.position_embeddings",
            [positionName, graph.Ints([virtualTokens]), end, graph.Ints([0])]); // (T, H): rows P..P+T-1
        string types = graph.Op("Gather", "embeddings.token_type_embeddings",
            [graph.Weight(prefix + "embeddings.token_type_embeddings.weight", [.. typeTable.shape], Values(typeTable)), TokenTypeIds]);
        string sum = graph.Op("Add", "embeddings", [graph.Op("Add", "embeddings", [words, positions]), types]);
        if (prompt?.Embeddings is { } embeddings)
        {
            // An input-side prompt's rows do not depend on the input: prompt + its positions 0..P-1 + token type 0, summed
            // in BertEmbeddings' order, one constant (1, P, H) put in front of every row of the batch.
            using var rows = (embeddings.detach().to(ScalarType.Float32) + positionTable[..virtualTokens] + typeTable[0]).unsqueeze(0);
            string constant = graph.Weight("prompt_encoder.embeddings", [.. rows.shape], Values(rows));
            string tiled = graph.Op("Expand", "prompt_encoder", [constant, graph.Op("Concat", "prompt_encoder", [batch, graph.Ints([1, 1])], Int("axis", 0))]);
            sum = graph.Op("Concat", "prompt_encoder", [tiled, sum], Int("axis", 1)); // (B, P+T, H)
        }
        string hidden = LayerNorm(sum, "embeddings.LayerNorm");

        // (B, T) keep-mask -> (B, 1, 1, T) additive mask: 0 where attended, float's minimum elsewhere (BertModel.AdditiveMask).
        // Virtual positions (a prompt in front, or a prefix's keys) are always attended: P zeros in front.
        string keep = graph.Op("Cast", "mask", [AttentionMask], Int("to", (long)OnnxDataType.Float));
        string blocked = graph.Op("Mul", "mask", [graph.Op("Sub", "mask", [graph.Scalar(1), keep]), graph.Scalar(float.MinValue)]);
        int front = virtualTokens + (int)(prompt?.Prefixes?[0].Key.shape[2] ?? 0);
        if (front > 0) blocked = graph.Op("Pad", "mask", [blocked, graph.Ints([0, front, 0, 0])]); // (B, P+T)
        string mask = graph.Op("Unsqueeze", "mask", [blocked, graph.Ints([1, 2])]);
        if (prompt?.Prefixes is not null) prefixBatch = graph.Op("Concat", "prompt_encoder", [batch, graph.Ints([1, 1, 1])], Int("axis", 0)); // [B, 1, 1, 1]

        for (int i = 0; i < Config.NumHiddenLayers; i++) hidden = Layer(hidden, mask, i, $"encoder.layer.{i}");
        // The real tokens start after the virtual ones; the pooler reads the real [CLS] (BertModel's poolPosition).
        LastHiddenState = virtualTokens == 0 ? hidden
            : graph.Op("Slice", "prompt_encoder", [hidden, graph.Ints([virtualTokens]), graph.Ints([long.MaxValue]), graph.Ints([1])]);
        if (hasPooler)
        {
            string first = graph.Op("Gather", "pooler", [hidden, graph.Ints([virtualTokens], scalar: true)], Int("axis", 1)); // (B, H)
            PooledOutput = graph.Op("Tanh", "pooler", [Linear(first, "pooler.dense")]);
        }
    }

    /// <summary>One BertLayer: self-attention, its output projection with residual and LayerNorm, then the feed-forward block.</summary>
    string Layer(string hidden, string mask, int index, string path)
    {
        int heads = Config.NumAttentionHeads, size = Config.HeadSize;
        string scope = $"{path}.attention.self";
        string Heads(string module, long[] perm) => graph.Op("Transpose", scope,
            [graph.Op("Reshape", scope, [Linear(hidden, $"{scope}.{module}"), graph.Ints([0, 0, heads, size])])], IntList("perm", perm));
        string q = Heads("query", [0, 2, 1, 3]); // (B, N, T, D)
        string kT = Heads("key", [0, 2, 3, 1]); // (B, N, D, T)
        string v = Heads("value", [0, 2, 1, 3]); // (B, N, T, D)
        if (prompt?.Prefixes is { } prefixes)
        {
            // A key/value prefix in front of the layer's own keys and values, the same for every row of the batch.
            string Tiled(Tensor values, string name) =>
                graph.Op("Expand", scope, [graph.Weight($"prompt_encoder.{path}.{name}", [.. values.shape], Values(values)), prefixBatch]);
            using var key = prefixes[index].Key.detach().transpose(2, 3); // (1, N, D, P)
            kT = graph.Op("Concat", scope, [Tiled(key, "key"), kT], Int("axis", 3)); // (B, N, D, P+T)
            v = graph.Op("Concat", scope, [Tiled(prefixes[index].Value.detach(), "value"), v], Int("axis", 2)); // (B, N, P+T, D)
        }
        string scores = graph.Op("Mul", scope, [graph.Op("MatMul", scope, [q, kT]), graph.Scalar((float)(1.0 / Math.Sqrt(size)))]); // (B, N, T, T)
        string probabilities = graph.Op("Softmax", scope, [graph.Op("Add", scope, [scores, mask])], Int("axis", -1));
        string context = graph.Op("Reshape", scope,
            [graph.Op("Transpose", scope, [graph.Op("MatMul", scope, [probabilities, v])], IntList("perm", 0, 2, 1, 3)),
             graph.Ints([0, 0, Config.HiddenSize])]); // (B, T, H)
        string attended = Residual(context, hidden, $"{path}.attention.output");
        string intermediate = Activation(Linear(attended, $"{path}.intermediate.dense"), $"{path}.intermediate"); // (B, T, I)
        return Residual(intermediate, attended, $"{path}.output");
    }

    /// <summary>BertResidualOutput: dense, residual add, LayerNorm.</summary>
    string Residual(string input, string residual, string path) =>
        LayerNorm(graph.Op("Add", path, [Linear(input, $"{path}.dense"), residual]), $"{path}.LayerNorm");

    string LayerNorm(string x, string module) =>
        graph.Op("LayerNormalization", module, [x, Named($"{module}.weight"), Named($"{module}.bias")],
            Int("axis", -1), Float("epsilon", (float)Config.LayerNormEps));

    /// <summary><c>hidden_act</c> as Activations.Get computes it: exact (erf) GELU, the tanh approximation, ReLU, SiLU or tanh.</summary>
    string Activation(string x, string scope)
    {
        string Mul(string a, string b) => graph.Op("Mul", scope, [a, b]);
        string Add(string a, string b) => graph.Op("Add", scope, [a, b]);
        switch (Config.HiddenAct)
        {
            case "gelu": // 0.5 x (1 + erf(x / sqrt 2))
                string erf = graph.Op("Erf", scope, [graph.Op("Div", scope, [x, graph.Scalar((float)Math.Sqrt(2))])]);
                return Mul(Mul(x, Add(erf, graph.Scalar(1))), graph.Scalar(0.5f));
            case "gelu_new" or "gelu_pytorch_tanh": // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
                string cube = Mul(Mul(x, x), x);
                string inner = Mul(Add(x, Mul(cube, graph.Scalar(0.044715f))), graph.Scalar((float)Math.Sqrt(2 / Math.PI)));
                return Mul(Mul(x, Add(graph.Op("Tanh", scope, [inner]), graph.Scalar(1))), graph.Scalar(0.5f));
            case "relu": return graph.Op("Relu", scope, [x]);
            case "silu" or "swish": return Mul(x, graph.Op("Sigmoid", scope, [x]));
            case "tanh": return graph.Op("Tanh", scope, [x]);
            default: throw new ArgumentException($"hidden_act '{Config.HiddenAct}' has no ONNX form here (gelu, gelu_new, gelu_pytorch_tanh, relu, silu, tanh)");
        }
    }

    /// <summary>
    /// One vector per text, (batch, hidden): [CLS] as it is, [CLS] through the pooler, or the mean of the real tokens'
    /// states (padding left out, as SequenceHead and sentence-transformers' mean pooling compute it).
    /// </summary>
    public string Pool(Pooling pooling)
    {
        switch (pooling)
        {
            case Pooling.Cls: return graph.Op("Gather", "pooling", [LastHiddenState, graph.Ints([0], scalar: true)], Int("axis", 1)); // the real [CLS]
            case Pooling.Pooler: return PooledOutput ?? throw new ArgumentException("This encoder has no pooler; pool with [CLS] or the mean.");
            case Pooling.Mean:
                string weights = graph.Op("Unsqueeze", "pooling",
                    [graph.Op("Cast", "pooling", [AttentionMask], Int("to", (long)OnnxDataType.Float)), graph.Ints([2])]); // (B, T, 1)
                string total = graph.Op("ReduceSum", "pooling", [graph.Op("Mul", "pooling", [LastHiddenState, weights]), graph.Ints([1])], Int("keepdims", 0));
                string count = graph.Op("ReduceSum", "pooling", [weights, graph.Ints([1])], Int("keepdims", 0)); // (B, 1)
                return graph.Op("Div", "pooling", [total, graph.Op("Max", "pooling", [count, graph.Scalar(1)])]);
            default: throw new ArgumentOutOfRangeException(nameof(pooling), pooling, "unknown pooling");
        }
    }

    /// <summary>Each row scaled to unit L2 norm, as torch's <c>normalize(p=2, dim=1, eps=1e-12)</c> (sentence-transformers' Normalize).</summary>
    public string Normalize(string x)
    {
        string norm = graph.Op("ReduceL2", "normalize", [x], IntList("axes", 1), Int("keepdims", 1)); // (B, 1)
        return graph.Op("Div", "normalize", [x, graph.Op("Max", "normalize", [norm, graph.Scalar(1e-12f)])]);
    }

    /// <summary>A Linear layer of the encoder, by its module path: MatMul with the (in, out) weight, then Add of the bias.</summary>
    string Linear(string x, string module) => Product(x, module, Take($"{module}.weight"), Take($"{module}.bias"), prefix + module);

    /// <summary>A Linear layer from outside the encoder (a task head's classifier), named <paramref name="name"/>.</summary>
    public string Linear(string x, string name, Tensor weight, Tensor? bias) => Product(x, name, weight, bias, name);

    string Product(string x, string scope, Tensor weight, Tensor? bias, string name)
    {
        using var transposed = weight.detach().t(); // (in, out)
        string product = graph.Op("MatMul", scope, [x, graph.Weight($"{name}.weight", [.. transposed.shape], Values(transposed))]);
        return bias is null ? product : graph.Op("Add", scope, [product, graph.Weight($"{name}.bias", [.. bias.shape], Values(bias))]);
    }

    /// <summary>A parameter used as it is (an embedding table, a LayerNorm's weight or bias), under its Hugging Face key.</summary>
    string Named(string key)
    {
        var tensor = Take(key);
        return graph.Weight(prefix + key, [.. tensor.shape], Values(tensor));
    }

    Tensor Take(string key)
    {
        if (!weights.TryGetValue(key, out var tensor))
            throw new ArgumentException($"the encoder has no parameter {key}; its keys are not BertModel's (an adapter still wrapping it?)");
        used.Add(key);
        return tensor;
    }

    static float[] Values(Tensor tensor)
    {
        using var scope = NewDisposeScope();
        return tensor.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
    }

    /// <summary>
    /// The finished graph. Throws when a parameter of the model has no place in it: the graph would compute something
    /// other than the model (an adapter's own weights, a layer this export does not know).
    /// </summary>
    public OnnxModelDefinition Build(string graphName, IReadOnlyDictionary<string, string> metadata, string docString)
    {
        var left = weights.Keys.Where(k => !used.Contains(k)).ToList();
        if (left.Count > 0)
            throw new ArgumentException(
                $"the encoder's parameters {string.Join(", ", left.Take(4))}{(left.Count > 4 ? $" (+{left.Count - 4} more)" : "")} have no place in the ONNX graph; merge adapters before exporting");
        return graph.Build(graphName, metadata, docString);
    }
}
