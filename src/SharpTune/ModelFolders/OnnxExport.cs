using System.Text.Json;
using SharpTune.Checkpoints;
using SharpTune.Checkpoints.Onnx;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Models.Bert;
using SharpTune.Models.Bert.Onnx;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders;

/// <summary>What an ONNX export wrote and what its user should know (the outputs, what stays outside the graph).</summary>
public sealed record OnnxExportResult(IReadOnlyList<string> Files, IReadOnlyList<string> Outputs, IReadOnlyList<string> Notes);

/// <summary>
/// Exports an encoder as one ONNX file that ONNX Runtime, ML.NET's <c>ApplyOnnxModel</c> or any runtime of opset 17
/// runs, with the inputs Hugging Face's optimum gives a BERT (<c>input_ids</c>, <c>attention_mask</c>,
/// <c>token_type_ids</c>, int64, dynamic <c>batch</c> and <c>sequence</c>):
/// <list type="bullet">
/// <item>a fine-tuned task model (a run folder, its best/ or final/): <c>logits</c>, (batch, labels) per text with the
/// pooling it was trained with, or (batch, sequence, labels) per sub-word token for tagging; LoRA and IA3 are merged
/// into the weights, a prompt method's virtual tokens written into the graph as constants; a CRF's Viterbi decoding
/// stays outside the graph (its logits are the emissions);</item>
/// <item>a pretrained encoder (built-in name, Hugging Face or sentence-transformers folder, .onnx file):
/// <c>last_hidden_state</c> and <c>sentence_embedding</c>, pooled and normalised as the model was trained.</item>
/// </list>
/// </summary>
public static class OnnxExport
{
    public const string FileName = "model.onnx";

    /// <summary>
    /// Exports <paramref name="model"/> to <paramref name="output"/>: a path ending in <c>.onnx</c> is the file written;
    /// any other path is a folder, which gets <c>model.onnx</c> with the vocabulary, tokenizer settings and config.json
    /// (labels included) beside it, so the folder is what optimum writes and SharpTune loads it back as a model.
    /// </summary>
    public static OnnxExportResult Export(string model, string output)
    {
        if (File.Exists(output) && !IsOnnxPath(output))
            throw new ArgumentException($"--out {output} is an existing file; give a folder, or a path ending in .onnx for the file alone");
        if (output.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"--out {output} ends in .gguf, which names a GGUF file; an ONNX export is a path ending in .onnx or a folder");
        if (Directory.Exists(model) && File.Exists(Path.Combine(TaskModelFolder.Resolve(model), TaskSpec.FileName)))
        {
            using var loaded = TaskModelFolder.Load(model);
            return ExportTaskModel(loaded, TaskModelFolder.Resolve(model), output);
        }
        using var encoder = PretrainedEncoder.Load(model);
        return ExportEncoder(encoder, SentenceEmbedding.For(model, encoder), model, output);
    }

    static bool IsOnnxPath(string path) => path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase);

    /// <summary>A fine-tuned task model's logits; <paramref name="source"/> names it in messages.</summary>
    public static OnnxExportResult ExportTaskModel(LoadedTaskModel loaded, string source, string output)
    {
        var model = loaded.Model;
        var head = model.Head;
        using var plain = MergedExport.ToPlainModel(model.Encoder); // LoRA and IA3 merged; a plain encoder copied as it is
        using var prompt = model.PromptEncoder is IEncoderInputAdapter adapter ? VirtualTokens(adapter, model.Encoder) : null;
        var graph = BertOnnxGraph.Encode(plain, prefix: "bert.", prompt?.Value);
        bool tokens = head.Kind == TaskKind.Tokens;
        Pooling pooling = head.MeanPooling ? Pooling.Mean : head.UsePooler ? Pooling.Pooler : Pooling.Cls;
        string features = tokens ? graph.LastHiddenState : graph.Pool(pooling);
        string logits = graph.Linear(features, "classifier", model.Classifier.weight!, model.Classifier.bias);
        var outputShape = tokens ? new[] { BertOnnxGraph.Batch, BertOnnxGraph.Sequence, OnnxDim.Fixed(head.NumLabels) }
            : [BertOnnxGraph.Batch, OnnxDim.Fixed(head.NumLabels)];
        graph.Graph.Output(logits, "logits", OnnxDataType.Float, outputShape);

        var notes = new List<string>();
        var metadata = new Dictionary<string, string>
        {
            ["sharptune.kind"] = "task",
            ["sharptune.task"] = JsonNamingPolicy.SnakeCaseLower.ConvertName(head.Kind.ToString()),
            ["sharptune.method"] = loaded.Spec.Method,
            ["sharptune.max_length"] = loaded.Spec.MaxLength.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        if (!tokens) metadata["sharptune.pooling"] = PoolingDefault.Name(pooling);
        if (loaded.Labels is { } labels) metadata["id2label"] = JsonSerializer.Serialize(labels.Id2Label);
        string outputs = head.Kind switch
        {
            TaskKind.SingleLabel => $"logits (batch, {head.NumLabels}): class scores; softmax gives the probabilities, argmax the class",
            TaskKind.MultiLabel => $"logits (batch, {head.NumLabels}): one score per class; sigmoid > 0.5 marks the classes that apply",
            TaskKind.Regression => "logits (batch, 1): the predicted value",
            _ => $"logits (batch, sequence, {head.NumLabels}): scores per sub-word token, as transformers' BertForTokenClassification; " +
                 "SharpTune labels each word by its first sub-word",
        };
        if (pooling == Pooling.Mean && !tokens) notes.Add("the classifier reads the mean of the real tokens (attention_mask 1), as the model was trained");
        if (model.Crf is { } crf)
        {
            // The CRF's parameters ride along as metadata, so the file alone is enough to decode.
            metadata["sharptune.crf.transitions"] = JsonSerializer.Serialize(Rows(crf.transitions));
            metadata["sharptune.crf.start_transitions"] = JsonSerializer.Serialize(Values(crf.start_transitions));
            metadata["sharptune.crf.end_transitions"] = JsonSerializer.Serialize(Values(crf.end_transitions));
            notes.Add("CRF: Viterbi decoding is not part of the ONNX graph; logits are the CRF's emissions. Take each word's first sub-word, " +
                      "then decode with the transitions in the file's metadata (sharptune.crf.*) or crf.* of the model's weights");
        }
        if (loaded.Spec.Method is "lora" or "ia3") notes.Add($"the {loaded.Spec.Method} adapter is merged into the exported weights");
        if (prompt?.Value is { } written)
        {
            long count = written.Embeddings?.shape[0] ?? written.Prefixes![0].Key.shape[2];
            metadata["sharptune.virtual_tokens"] = count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            notes.Add($"the {loaded.Spec.Method} prompt ({count} virtual tokens{(written.Prefixes is null ? "" : " as key/value prefixes in every layer")}) " +
                      "is written into the graph as constants; the inputs are the real tokens only");
        }
        string doc = $"SharpTune {head.Kind} model exported from {Path.GetFileName(Path.GetFullPath(source))}; {outputs}";
        var definition = graph.Build("sharptune_task_model", metadata, doc);
        var files = Write(definition, output, loaded.Vocab, loaded.LowerCase, plain.Config, loaded.Labels?.Id2Label, loaded.Spec.MaxLength);
        return new OnnxExportResult(files, [outputs], notes);
    }

    /// <summary>
    /// A prompt method's virtual tokens, computed once: a trained prompt module's output does not depend on the input, so
    /// preparing a one-token batch (in eval mode, no dropout) gives the prompt rows (P, H) or every layer's key/value prefix.
    /// </summary>
    static Disposable<OnnxPrompt> VirtualTokens(IEncoderInputAdapter adapter, BertModel encoder)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var inputs = adapter.Prepare(encoder, zeros(1, 1, ScalarType.Int64), ones(1, 1, ScalarType.Int64), zeros(1, 1, ScalarType.Int64));
        var embeddings = inputs.VirtualTokens > 0 && inputs.InputsEmbeds is { } embeds ? embeds[0, ..inputs.VirtualTokens].clone() : null; // (P, H)
        var prefixes = inputs.Prefixes?.Select(p => new KeyValuePrefix(p.Key.clone(), p.Value.clone())).ToList(); // (1, N, P, D) each
        var owned = new List<Tensor>();
        if (embeddings is not null) owned.Add(embeddings);
        foreach (var p in prefixes ?? []) owned.AddRange([p.Key, p.Value]);
        foreach (var tensor in owned) tensor.MoveToOuterDisposeScope();
        return new Disposable<OnnxPrompt>(new OnnxPrompt(embeddings, prefixes), owned);
    }

    /// <summary>A value and the tensors it holds, disposed together.</summary>
    sealed class Disposable<T>(T value, IReadOnlyList<Tensor> tensors) : IDisposable
    {
        public T Value { get; } = value;
        public void Dispose() { foreach (var tensor in tensors) tensor.Dispose(); }
    }

    /// <summary>A pretrained encoder's token states and sentence embedding; <paramref name="source"/> names it in messages.</summary>
    public static OnnxExportResult ExportEncoder(PretrainedEncoder encoder, SentenceEmbedding embedding, string source, string output)
    {
        var graph = BertOnnxGraph.Encode(encoder.Model);
        string pooled = graph.Pool(embedding.Pooling);
        string sentence = embedding.Normalize ? graph.Normalize(pooled) : pooled;
        int hidden = encoder.Config.HiddenSize;
        graph.Graph.Output(graph.LastHiddenState, "last_hidden_state", OnnxDataType.Float, BertOnnxGraph.Batch, BertOnnxGraph.Sequence, OnnxDim.Fixed(hidden));
        graph.Graph.Output(sentence, "sentence_embedding", OnnxDataType.Float, BertOnnxGraph.Batch, OnnxDim.Fixed(hidden));
        var metadata = new Dictionary<string, string>
        {
            ["sharptune.kind"] = "embedding",
            ["sharptune.pooling"] = PoolingDefault.Name(embedding.Pooling),
            ["sharptune.normalize"] = embedding.Normalize ? "true" : "false",
        };
        string how = $"{PoolingDefault.Name(embedding.Pooling)} pooling{(embedding.Normalize ? ", normalised to unit length" : ", not normalised")}";
        string[] outputs =
        [
            $"last_hidden_state (batch, sequence, {hidden}): every token's state",
            $"sentence_embedding (batch, {hidden}): {how} ({embedding.Reason})",
        ];
        var definition = graph.Build("sharptune_encoder", metadata, $"SharpTune export of {source}: {string.Join("; ", outputs)}");
        var files = Write(definition, output, encoder.Vocab, encoder.LowerCase, encoder.Config, null, encoder.Config.MaxPositionEmbeddings);
        return new OnnxExportResult(files, outputs, []);
    }

    /// <summary>The .onnx file, and in a folder the files a tokenizer and a loader need beside it.</summary>
    static List<string> Write(OnnxModelDefinition definition, string output, byte[] vocab, bool lowerCase, BertConfig config,
        IReadOnlyDictionary<string, string>? id2label, int maxLength)
    {
        if (IsOnnxPath(output))
        {
            OnnxWriter.Write(output, definition);
            return [Path.GetFullPath(output)];
        }
        string folder = Path.GetFullPath(output);
        string file = Path.Combine(folder, FileName);
        OnnxWriter.Write(file, definition);
        string vocabPath = Path.Combine(folder, HuggingFaceCheckpoint.VocabFile);
        AtomicFile.Write(vocabPath, stream => stream.Write(vocab));
        string tokenizerPath = Path.Combine(folder, HuggingFaceCheckpoint.TokenizerConfigFile);
        AtomicFile.WriteAllText(tokenizerPath,
            $"{{\n  \"tokenizer_class\": \"BertTokenizer\",\n  \"do_lower_case\": {(lowerCase ? "true" : "false")},\n  \"model_max_length\": {maxLength}\n}}\n");
        string configPath = Path.Combine(folder, HuggingFaceCheckpoint.ConfigFile);
        var labelled = id2label is null ? config with { Architectures = null }
            : config with { Id2Label = id2label, Label2Id = id2label.ToDictionary(kv => kv.Value, kv => int.Parse(kv.Key, System.Globalization.CultureInfo.InvariantCulture)) };
        AtomicFile.WriteAllText(configPath, labelled.ToJson() + "\n");
        return [file, vocabPath, tokenizerPath, configPath];
    }

    static float[] Values(Tensor tensor) => tensor.detach().cpu().to(ScalarType.Float32).data<float>().ToArray();

    static float[][] Rows(Tensor matrix)
    {
        var flat = Values(matrix);
        int columns = (int)matrix.shape[1];
        return Enumerable.Range(0, (int)matrix.shape[0]).Select(r => flat[(r * columns)..((r + 1) * columns)]).ToArray();
    }
}
