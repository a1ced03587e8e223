using SharpTune.Checkpoints.Onnx;
using System.Text.RegularExpressions;
using SharpTune.Models.Bert;
using static TorchSharp.torch;

namespace SharpTune.Models.Bert.Onnx;

/// <summary>The weights of an ONNX export as a Hugging Face state dict, with the configuration read from the graph.</summary>
/// <param name="Config">Sizes from the weights' shapes; eps, heads and activation traced from the graph.</param>
/// <param name="StateDict">HF <c>BertModel</c> keys in HF order; Linear weights (out, in). The caller owns the tensors.</param>
/// <param name="Notes">What the import found or assumed (producer, missing pooler, where eps and heads came from).</param>
public sealed record ImportedModel(BertConfig Config, Dictionary<string, Tensor> StateDict, IReadOnlyList<string> Notes);

/// <summary>
/// Imports the weights of an ONNX file exported from a Hugging Face BERT (torch.onnx, as sentence-transformers
/// and Optimum do) into a state dict with HF <c>BertModel</c> keys. Only the weights and a few sizes are read;
/// the graph is traced to name anonymous weights, never run.
/// </summary>
public static class OnnxBertImporter
{
    /// <summary>Imports the ONNX file at <paramref name="path"/>.</summary>
    /// <inheritdoc cref="Load(byte[], string, int?)"/>
    public static ImportedModel Load(string path, int? numAttentionHeads = null)
    {
        var file = new FileInfo(path);
        if (!file.Exists) throw new FileNotFoundException($"ONNX model not found: {path}", path);
        if (file.Length > Array.MaxLength)
            throw new InvalidDataException($"{path}: {file.Length} bytes is more than an ONNX file without external data can hold (2 GB)");
        return Load(File.ReadAllBytes(path), path, numAttentionHeads);
    }

    /// <summary>
    /// Imports an ONNX model from <paramref name="bytes"/>. The state dict holds every <c>BertModel</c> key; when
    /// the graph has no pooler (it ends at <c>last_hidden_state</c>) the <c>pooler.dense.*</c> keys are left out
    /// and <see cref="ImportedModel.Notes"/> says so.
    /// </summary>
    /// <param name="sourceName">Names the file in error messages.</param>
    /// <param name="numAttentionHeads">Heads per layer; when null they are read from the Reshape that splits heads.</param>
    /// <exception cref="InvalidDataException">The bytes are not a valid ONNX model, a weight cannot be mapped to a
    /// key, a key is missing or has the wrong shape, or the heads cannot be inferred and were not given.</exception>
    public static ImportedModel Load(byte[] bytes, string sourceName, int? numAttentionHeads = null)
    {
        var model = OnnxModel.Parse(bytes, sourceName);
        var graph = new OnnxGraphIndex(model.Graph, sourceName);
        var notes = new List<string> { $"exported by {model.ProducerName} {model.ProducerVersion} (IR version {model.IrVersion})".Trim() };
        var (mapped, unmapped) = BertWeightMap.Map(graph, sourceName);

        var ignored = model.Graph.Initializers.Values.Where(t => !BertWeightMap.LooksLikeWeight(t)).Select(t => t.Name).ToList();
        if (ignored.Count > 0)
            notes.Add($"ignored {ignored.Count} initializers that are integer or scalar constants, not weights ({List(ignored, 5)})");

        string[] embeddings = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight"];
        if (embeddings.Where(k => !mapped.ContainsKey(k)).ToList() is { Count: > 0 } noEmbeddings)
            throw Mismatch(sourceName, noEmbeddings, [], unmapped, []);
        var config = InferConfig(graph, mapped, sourceName, numAttentionHeads, notes);

        bool hasPooler = mapped.Keys.Any(k => k.StartsWith("pooler."));
        if (!hasPooler) notes.Add($"the graph has no pooler (its outputs: {string.Join(", ", model.Graph.Outputs)}); pooler.dense.* are not in the state dict");
        var expected = ExpectedShapes(config, hasPooler);
        var missing = expected.Keys.Where(k => !mapped.ContainsKey(k)).ToList();
        var unexpected = mapped.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        var wrongShape = expected.Where(e => mapped.TryGetValue(e.Key, out var w) && !w.HfShape.SequenceEqual(e.Value))
            .Select(e => $"{e.Key}: expected [{string.Join(", ", e.Value)}], found [{string.Join(", ", mapped[e.Key].HfShape)}] in '{mapped[e.Key].Tensor.Name}'")
            .ToList();
        if (missing.Count + unexpected.Count + unmapped.Count + wrongShape.Count > 0)
            throw Mismatch(sourceName, missing, unexpected, unmapped, wrongShape);

        var stateDict = new Dictionary<string, Tensor>();
        foreach (var (key, shape) in expected)
            stateDict[key] = tensor(HfLayout(mapped[key], sourceName), shape);
        return new ImportedModel(config, stateDict, notes);
    }

    static BertConfig InferConfig(OnnxGraphIndex graph, Dictionary<string, MappedWeight> mapped, string source, int? heads, List<string> notes)
    {
        var word = mapped["embeddings.word_embeddings.weight"].Tensor.Dims;          // (vocab, hidden)
        var position = mapped["embeddings.position_embeddings.weight"].Tensor.Dims;  // (max_positions, hidden)
        var tokenType = mapped["embeddings.token_type_embeddings.weight"].Tensor.Dims;  // (type_vocab, hidden)
        if (word.Length != 2 || position.Length != 2 || tokenType.Length != 2)
            throw new InvalidDataException($"{source}: embedding tables must be 2-D, found word {Dims(word)}, position {Dims(position)}, token type {Dims(tokenType)}");

        // Layers must be numbered 0..L-1; a gap would otherwise surface as a confusing list of missing keys.
        var layers = mapped.Keys.Select(k => Regex.Match(k, @"^encoder\.layer\.(\d+)\.")).Where(m => m.Success)
            .Select(m => int.TryParse(m.Groups[1].Value, out int i) ? i : -1).Distinct().Order().ToList();
        if (layers.Count == 0) throw new InvalidDataException($"{source}: no encoder.layer.* weights found");
        if (layers[0] != 0 || layers[^1] != layers.Count - 1)
            throw new InvalidDataException($"{source}: encoder layers must be numbered 0..{layers.Count - 1}, found {string.Join(", ", layers)}");
        int intermediate = mapped.TryGetValue("encoder.layer.0.intermediate.dense.bias", out var ib) && ib.Tensor.Dims.Length == 1
            ? (int)ib.Tensor.Dims[0]
            : throw new InvalidDataException($"{source}: encoder.layer.0.intermediate.dense.bias is missing or not 1-D; cannot tell intermediate_size");

        int hidden = (int)word[1];
        int numHeads = GraphFacts.AttentionHeads(graph, mapped, layers.Count, hidden, heads, source, notes);
        return new BertConfig
        {
            VocabSize = (int)word[0],
            HiddenSize = hidden,
            MaxPositionEmbeddings = (int)position[0],
            TypeVocabSize = (int)tokenType[0],
            NumHiddenLayers = layers.Count,
            IntermediateSize = intermediate,
            NumAttentionHeads = numHeads,
            LayerNormEps = GraphFacts.LayerNormEps(graph, source, notes),
            HiddenAct = GraphFacts.HiddenAct(graph, mapped, notes),
            Architectures = ["BertModel"],
        }.Validate(source);
    }

    /// <summary>Every key of an HF <c>BertModel</c> state dict with its shape, in HF order.</summary>
    internal static Dictionary<string, long[]> ExpectedShapes(BertConfig c, bool withPooler)
    {
        long h = c.HiddenSize, i = c.IntermediateSize;
        var shapes = new Dictionary<string, long[]>
        {
            ["embeddings.word_embeddings.weight"] = [c.VocabSize, h],
            ["embeddings.position_embeddings.weight"] = [c.MaxPositionEmbeddings, h],
            ["embeddings.token_type_embeddings.weight"] = [c.TypeVocabSize, h],
            ["embeddings.LayerNorm.weight"] = [h],
            ["embeddings.LayerNorm.bias"] = [h],
        };
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"encoder.layer.{l}.";
            foreach (string qkv in new[] { "query", "key", "value" })
            {
                shapes[$"{p}attention.self.{qkv}.weight"] = [h, h];
                shapes[$"{p}attention.self.{qkv}.bias"] = [h];
            }
            shapes[$"{p}attention.output.dense.weight"] = [h, h];
            shapes[$"{p}attention.output.dense.bias"] = [h];
            shapes[$"{p}attention.output.LayerNorm.weight"] = [h];
            shapes[$"{p}attention.output.LayerNorm.bias"] = [h];
            shapes[$"{p}intermediate.dense.weight"] = [i, h];
            shapes[$"{p}intermediate.dense.bias"] = [i];
            shapes[$"{p}output.dense.weight"] = [h, i];
            shapes[$"{p}output.dense.bias"] = [h];
            shapes[$"{p}output.LayerNorm.weight"] = [h];
            shapes[$"{p}output.LayerNorm.bias"] = [h];
        }
        if (withPooler)
        {
            shapes["pooler.dense.weight"] = [h, h];
            shapes["pooler.dense.bias"] = [h];
        }
        return shapes;
    }

    /// <summary>The tensor's values in HF layout: a (in, out) Linear weight becomes (out, in).</summary>
    static float[] HfLayout(MappedWeight w, string source)
    {
        var values = w.Tensor.Floats
            ?? throw new InvalidDataException($"{source}: {w.Key} ('{w.Tensor.Name}') has data type {w.Tensor.DataType}; only FLOAT weights are supported");
        if (!w.Transpose) return values;
        int rows = (int)w.Tensor.Dims[0], cols = (int)w.Tensor.Dims[1];  // stored (in, out)
        var result = new float[values.Length];                              // (out, in)
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                result[j * rows + i] = values[i * cols + j];
        return result;
    }

    static InvalidDataException Mismatch(string source, List<string> missing, List<string> unexpected, List<string> unmapped, List<string> wrongShape)
    {
        var parts = new List<string>();
        if (missing.Count > 0) parts.Add($"missing keys: {List(missing, 20)}");
        if (unexpected.Count > 0) parts.Add($"keys a BertModel does not have: {List(unexpected, 20)}");
        if (unmapped.Count > 0) parts.Add($"initializers that look like weights but could not be mapped: {List(unmapped, 20)}");
        if (wrongShape.Count > 0) parts.Add($"wrong shapes: {List(wrongShape, 20)}");
        return new InvalidDataException($"{source}: not importable as a Hugging Face BertModel; {string.Join("; ", parts)}");
    }

    static string List(IReadOnlyList<string> items, int max) =>
        string.Join(", ", items.Take(max)) + (items.Count > max ? $" and {items.Count - max} more" : "");

    static string Dims(long[] dims) => $"[{string.Join(", ", dims)}]";
}
