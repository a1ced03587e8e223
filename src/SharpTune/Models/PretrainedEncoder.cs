using SharpTune.Models.Bert.Onnx;
using SharpTune.Checkpoints;
using SharpTune.Checkpoints.Onnx;
using SharpTune.Models.Bert;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>Where a pretrained encoder's weights came from.</summary>
public enum WeightOrigin { BuiltIn, HuggingFaceFolder, OnnxFile }

/// <summary>
/// A pretrained BERT encoder with its vocabulary, loaded through one entry point from a built-in name
/// (<c>minilm</c>, <c>arctic-xs</c>), a Hugging Face model folder, or an ONNX file exported from one.
/// </summary>
public sealed class PretrainedEncoder : IDisposable
{
    PretrainedEncoder(BertModel model, byte[] vocab, bool lowerCase, WeightOrigin origin, string source,
        IReadOnlyDictionary<string, Tensor> otherWeights, IReadOnlyList<string> notes, PoolingDefault pooling)
    {
        Pooling = pooling;
        Model = model;
        Vocab = vocab;
        LowerCase = lowerCase;
        Origin = origin;
        Source = source;
        OtherWeights = otherWeights;
        Notes = notes;
    }

    public BertModel Model { get; }
    public BertConfig Config => Model.Config;

    /// <summary>The WordPiece vocabulary file's bytes (<c>vocab.txt</c>).</summary>
    public byte[] Vocab { get; }
    public bool LowerCase { get; }
    public WeightOrigin Origin { get; }

    /// <summary>A human-readable description of the files the weights were read from.</summary>
    public string Source { get; }

    /// <summary>Checkpoint tensors that are not part of the encoder (a saved task head, an MLM head), by their original key.</summary>
    public IReadOnlyDictionary<string, Tensor> OtherWeights { get; }

    /// <summary>Things worth telling the user about the import (no pooler, ignored tensors).</summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>How sequence tasks pool by default: what the model was trained with, where it says so.</summary>
    public PoolingDefault Pooling { get; }

    public long ParameterCount => Model.parameters().Sum(p => p.numel());

    /// <summary>The model's tokenizer, from its vocabulary; <paramref name="source"/> names the vocabulary in errors.</summary>
    public BertTextTokenizer CreateTokenizer(string? source = null) =>
        BertTextTokenizer.FromVocabStream(new MemoryStream(Vocab), LowerCase, source ?? $"{Source}: vocabulary");

    /// <summary>
    /// Loads <paramref name="spec"/>: a built-in model name, a folder with <c>config.json</c>, or a <c>.onnx</c> file
    /// (its vocabulary is read from <c>vocab.txt</c> beside it; a <c>config.json</c> there supplies what the graph cannot).
    /// </summary>
    public static PretrainedEncoder Load(string spec)
    {
        if (BuiltInModels.Find(spec) is { } builtIn) return LoadBuiltIn(builtIn);
        if (Directory.Exists(spec)) return LoadFolder(spec);
        if (File.Exists(spec) && spec.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)) return LoadOnnxFile(spec);
        if (File.Exists(spec))
            throw new InvalidDataException($"{spec}: not a model; give a built-in name, a Hugging Face model folder or an .onnx file");
        throw new FileNotFoundException(
            $"Model '{spec}' not found: it is neither a built-in model ({string.Join(", ", BuiltInModels.All.Select(m => m.Name))}) nor an existing folder or .onnx file", spec);
    }

    static PretrainedEncoder LoadBuiltIn(BuiltInModel builtIn)
    {
        var imported = OnnxBertImporter.Load(builtIn.ReadOnnx(), $"{builtIn.Name} ({builtIn.OnnxResource})", builtIn.NumAttentionHeads);
        return FromImport(imported, builtIn.ReadVocab(), builtIn.LowerCase, WeightOrigin.BuiltIn,
            $"built-in '{builtIn.Name}': {builtIn.Description}; ONNX resource {builtIn.OnnxResource} in {builtIn.AssemblyPath}", _ => builtIn.Pooling);
    }

    static PretrainedEncoder LoadOnnxFile(string path)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string vocabPath = Path.Combine(directory, HuggingFaceCheckpoint.VocabFile);
        if (!File.Exists(vocabPath))
            throw new FileNotFoundException($"{path}: the ONNX file needs its vocabulary beside it as {vocabPath}", vocabPath);
        string configPath = Path.Combine(directory, HuggingFaceCheckpoint.ConfigFile);
        BertConfig? known = File.Exists(configPath) ? BertConfig.Load(configPath) : null;
        var imported = OnnxBertImporter.Load(path, known?.NumAttentionHeads);
        var config = known is null ? imported.Config : imported.Config with { HiddenAct = known.HiddenAct, PadTokenId = known.PadTokenId };
        return FromImport(imported with { Config = config }, File.ReadAllBytes(vocabPath), HuggingFaceCheckpoint.ReadLowerCase(directory),
            WeightOrigin.OnnxFile, $"ONNX file {Path.GetFullPath(path)}", model => PoolingDefault.ForFolder(directory, model));
    }

    static PretrainedEncoder FromImport(ImportedModel imported, byte[] vocab, bool lowerCase, WeightOrigin origin, string source,
        Func<BertModel, PoolingDefault> pooling)
    {
        bool hasPooler = imported.StateDict.ContainsKey("pooler.dense.weight");
        var model = new BertModel(imported.Config, addPoolingLayer: hasPooler);
        var unused = StateDictLoader.Load(model, imported.StateDict, source);
        var notes = imported.Notes.Concat(unused.Select(k => $"ignored tensor {k}")).ToList();
        foreach (var tensor in imported.StateDict.Values) tensor.Dispose();
        model.eval();
        return new PretrainedEncoder(model, vocab, lowerCase, origin, source, new Dictionary<string, Tensor>(), notes, pooling(model));
    }

    static PretrainedEncoder LoadFolder(string folder)
    {
        if (!HuggingFaceCheckpoint.IsModelFolder(folder))
            throw new FileNotFoundException($"{folder}: not a model folder (no {HuggingFaceCheckpoint.ConfigFile})",
                Path.Combine(folder, HuggingFaceCheckpoint.ConfigFile));
        var config = BertConfig.Load(Path.Combine(folder, HuggingFaceCheckpoint.ConfigFile));
        string vocabPath = Path.Combine(folder, HuggingFaceCheckpoint.VocabFile);
        if (!File.Exists(vocabPath)) throw new FileNotFoundException($"{folder}: {HuggingFaceCheckpoint.VocabFile} is missing", vocabPath);

        var (raw, weightsSource) = HuggingFaceCheckpoint.LoadStateDict(folder);
        var (encoderWeights, other) = BertFolder.SplitEncoderKeys(raw);
        bool hasPooler = encoderWeights.ContainsKey("pooler.dense.weight");
        var model = new BertModel(config, addPoolingLayer: hasPooler);
        StateDictLoader.Load(model, encoderWeights, weightsSource);
        foreach (var tensor in encoderWeights.Values) tensor.Dispose();
        var notes = new List<string>();
        if (!hasPooler) notes.Add("checkpoint has no pooler; the model runs without one");
        if (other.Count > 0) notes.Add($"{other.Count} non-encoder tensor(s) kept for a task head: {string.Join(", ", other.Keys.Take(6))}");
        model.eval();
        return new PretrainedEncoder(model, File.ReadAllBytes(vocabPath), HuggingFaceCheckpoint.ReadLowerCase(folder),
            WeightOrigin.HuggingFaceFolder, $"Hugging Face folder {Path.GetFullPath(folder)} ({Path.GetFileName(weightsSource)})", other, notes,
            PoolingDefault.ForFolder(folder, model));
    }

    /// <summary>Saves the encoder in Hugging Face layout.</summary>
    public void Save(string folder) => BertFolder.Save(folder, Model, Vocab, LowerCase);

    public void Dispose()
    {
        Model.Dispose();
        foreach (var tensor in OtherWeights.Values) tensor.Dispose();
    }
}
