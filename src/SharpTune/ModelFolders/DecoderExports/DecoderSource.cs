using SharpTune.Checkpoints;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Gguf;
using SharpTune.Models.Decoders;
using SharpTune.Tokenization.Decoders;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>
/// The base a fine-tuned decoder came from, a GGUF file or a Hugging Face folder: where an export takes the tokenizer
/// (a GGUF's <c>tokenizer.*</c> metadata is copied as it is; a folder's <c>tokenizer.json</c> is converted), the stop
/// tokens of an Ollama <c>Modelfile</c>, the tokenizer files of a Hugging Face export, and the base weights a LoRA
/// adapter is checked against.
/// </summary>
public sealed class DecoderSource
{
    /// <summary>Files of a Hugging Face folder that belong to the tokenizer and generation settings, copied by a folder export.</summary>
    public static IReadOnlyList<string> TokenizerFiles { get; } =
    [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja",
        "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
    ];

    readonly Lazy<IDecoderTokenizer> tokenizer;
    readonly (bool Given, string? Text) chatTemplate;

    DecoderSource(string path, bool isGguf, (bool, string?) chatTemplate = default)
    {
        Path = System.IO.Path.GetFullPath(path);
        IsGguf = isGguf;
        tokenizer = new Lazy<IDecoderTokenizer>(LoadTokenizer);
        this.chatTemplate = chatTemplate;
    }

    /// <summary>The GGUF file or the Hugging Face folder, as a full path.</summary>
    public string Path { get; }

    public bool IsGguf { get; }

    /// <summary>The base's tokenizer (with its chat template and stop tokens).</summary>
    public IDecoderTokenizer Tokenizer => tokenizer.Value;

    /// <summary>
    /// The chat template an export writes (GGUF <c>tokenizer.chat_template</c>, <c>tokenizer_config.json</c>, the Modelfile):
    /// the one given by <see cref="WithChatTemplate"/>, else the base's own.
    /// </summary>
    public string? ChatTemplate => chatTemplate.Given ? chatTemplate.Text : Tokenizer.ChatTemplate;

    /// <summary>
    /// The same base with the chat template a fine-tuned model was trained with (a run's own, which may not be the base's);
    /// null: the model was trained with none, and the export writes none.
    /// </summary>
    public DecoderSource WithChatTemplate(string? text) => new(Path, IsGguf, (true, text));

    /// <summary>A GGUF file with tokenizer metadata (as llama.cpp's converter writes, or Ollama keeps).</summary>
    public static DecoderSource Gguf(string path)
    {
        if (Directory.Exists(path)) throw new ArgumentException($"base '{path}' is a folder, not a GGUF file");
        if (!File.Exists(path)) throw new FileNotFoundException($"base GGUF file not found: {path}", path);
        return new DecoderSource(path, isGguf: true);
    }

    /// <summary>A Hugging Face folder: <c>config.json</c>, weights and <c>tokenizer.json</c> (+ <c>tokenizer_config.json</c>).</summary>
    public static DecoderSource HuggingFace(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"base folder not found: {folder}");
        if (!HuggingFaceCheckpoint.IsModelFolder(folder))
            throw new ArgumentException($"base folder '{folder}' has no {HuggingFaceCheckpoint.ConfigFile}: not a Hugging Face model folder");
        return new DecoderSource(folder, isGguf: false);
    }

    /// <summary>A .gguf file or a Hugging Face folder, as <see cref="LanguageModel.Load"/> takes them.</summary>
    public static DecoderSource Open(string spec) =>
        File.Exists(spec) && spec.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? Gguf(spec)
        : Directory.Exists(spec) ? HuggingFace(spec)
        : throw new FileNotFoundException($"base model '{spec}' not found: give the Hugging Face folder or the .gguf file the model was fine-tuned from", spec);

    public override string ToString() => IsGguf ? $"GGUF file {Path}" : $"Hugging Face folder {Path}";

    IDecoderTokenizer LoadTokenizer() =>
        IsGguf ? DecoderTokenizers.FromData(GgufTokenizer(), Path) : DecoderTokenizers.FromHuggingFace(Path);

    /// <summary>A GGUF base's tokenizer metadata as the tokenizers take it.</summary>
    internal DecoderTokenizerData GgufTokenizer()
    {
        var file = GgufFile.Open(Path);
        var data = GgufTokenizerData.From(file)
            ?? throw new InvalidDataException($"{Path}: the GGUF file has no tokenizer (tokenizer.ggml.model is missing)");
        return new DecoderTokenizerData(
            data.Model, data.Pre, data.Tokens, data.TokenTypes, data.Merges, data.Scores, data.BosTokenId, data.EosTokenId,
            data.UnknownTokenId, data.PaddingTokenId, data.AddBosToken, data.AddEosToken, chatTemplate.Given ? chatTemplate.Text : data.ChatTemplate,
            data.AddSpacePrefix);
    }

    /// <summary>The <c>tokenizer.*</c> metadata of a GGUF export: a GGUF base's own keys and types unchanged, a folder's converted.</summary>
    internal List<KeyValuePair<string, GgufMetadataValue>> TokenizerMetadata(int vocabSize)
    {
        if (IsGguf)
        {
            var file = GgufFile.Open(Path);
            if (!file.TryGetArray<string>("tokenizer.ggml.tokens", out var tokens))
                throw new InvalidDataException($"{Path}: the GGUF file has no tokenizer (tokenizer.ggml.tokens is missing)");
            if (tokens.Length != vocabSize)
                throw new ArgumentException($"{Path}: the base has {tokens.Length} tokens, the model {vocabSize} embedding rows: not the base of this model");
            var copied = file.Metadata.Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).ToList();
            if (!chatTemplate.Given) return copied;
            copied.RemoveAll(kv => kv.Key == "tokenizer.chat_template");
            if (chatTemplate.Text is { } text) copied.Add(KeyValuePair.Create("tokenizer.chat_template", GgufMetadataValue.From(text)));
            return copied;
        }
        var d = GgufTokenizerConversion.FromHuggingFace(Path, vocabSize);
        var m = new List<KeyValuePair<string, object?>>
        {
            new("tokenizer.ggml.model", d.Model),
            new("tokenizer.ggml.pre", d.Pre),
            new("tokenizer.ggml.tokens", d.Tokens),
            new("tokenizer.ggml.scores", d.Scores),
            new("tokenizer.ggml.token_type", d.TokenTypes),
            new("tokenizer.ggml.merges", d.Merges),
            new("tokenizer.ggml.bos_token_id", (uint?)d.Bos),
            new("tokenizer.ggml.eos_token_id", (uint?)d.Eos),
            new("tokenizer.ggml.unknown_token_id", (uint?)d.Unk),
            new("tokenizer.ggml.padding_token_id", (uint?)d.Pad),
            new("tokenizer.ggml.add_bos_token", d.AddBos),
            new("tokenizer.ggml.add_eos_token", d.AddEos),
            new("tokenizer.ggml.add_space_prefix", d.AddSpacePrefix),
            new("tokenizer.chat_template", chatTemplate.Given ? chatTemplate.Text : d.ChatTemplate),
        };
        return m.Where(kv => kv.Value is not null).Select(kv => KeyValuePair.Create(kv.Key, GgufMetadataValue.From(kv.Value!))).ToList();
    }

    /// <summary>The base's weights under the model's Hugging Face keys, one at a time (the caller disposes each).</summary>
    internal IEnumerable<(string Key, Tensor Value)> BaseWeights()
    {
        if (IsGguf)
        {
            foreach (var item in GgufModelMap.Open(Path).ReadTensors()) yield return item;
            yield break;
        }
        string configPath = System.IO.Path.Combine(Path, HuggingFaceCheckpoint.ConfigFile);
        var json = PretrainedDecoder.ReadConfig(configPath);
        var family = DecoderFamilies.ForConfig(json, configPath);
        var config = family.ParseConfig(json, configPath);
        var (stateDict, _) = HuggingFaceCheckpoint.LoadStateDict(Path);
        try
        {
            foreach (var (raw, value) in stateDict)
            {
                if (family.MapCheckpointKey(raw, config) is { } key) yield return (key, value.alias());
            }
        }
        finally
        {
            foreach (var tensor in stateDict.Values) tensor.Dispose();
        }
    }

    /// <summary>
    /// A GGUF base's <c>rope_freqs.weight</c> (Llama 3.1's long-context factors, which SharpTune reads but does not apply
    /// yet, so its model's config has no rope_scaling for them), or null.
    /// </summary>
    internal Tensor? RopeFrequencyFactors()
    {
        if (!IsGguf) return null;
        var file = GgufFile.Open(Path);
        return file.HasTensor("rope_freqs.weight") ? file.ReadTensor("rope_freqs.weight") : null;
    }

    /// <summary>The architecture the base names: a GGUF's <c>general.architecture</c>, a folder's family.</summary>
    internal string Family()
    {
        if (IsGguf) return DecoderFamilies.ForGgufArchitecture(GgufFile.Open(Path).GetString("general.architecture"), Path).Name;
        string configPath = System.IO.Path.Combine(Path, HuggingFaceCheckpoint.ConfigFile);
        return DecoderFamilies.ForConfig(PretrainedDecoder.ReadConfig(configPath), configPath).Name;
    }
}
