using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using SharpTune.Checkpoints;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Gguf;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Quantized;
using SharpTune.Tokenization.ChatTemplates;
using SharpTune.Tokenization.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders;

/// <summary>
/// A decoder language model ready to use: the network, its tokenizer, its chat template and generation defaults,
/// loaded through one entry point from a Hugging Face folder or a GGUF file (what llama.cpp, Ollama and LM Studio
/// keep on disk, quantized or not).
/// </summary>
public sealed class LanguageModel : IDisposable
{
    readonly StoredWeights? stored;

    LanguageModel(ICausalLanguageModel model, IDecoderTokenizer tokenizer, ChatTemplate? template, string source, IReadOnlyList<string> notes,
        StoredWeights? stored = null)
    {
        this.stored = stored;
        Model = model;
        Tokenizer = tokenizer;
        Template = template;
        Source = source;
        Notes = notes;
    }

    public ICausalLanguageModel Model { get; }
    public IDecoderTokenizer Tokenizer { get; }
    /// <summary>The model's chat template, or null when it ships none (<c>--chat-template FILE</c> supplies one).</summary>
    public ChatTemplate? Template { get; }
    /// <summary>Where the weights came from, in words.</summary>
    public string Source { get; }
    /// <summary>What is worth telling about the file (tensor types, ignored tensors).</summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>True when <paramref name="spec"/> names something this class loads: a .gguf file or a folder whose config.json is a decoder's.</summary>
    public static bool IsLanguageModel(string spec) => Find(spec) is not null;

    /// <summary>
    /// What <paramref name="spec"/> names when it is a language model: a .gguf file, or a folder whose config.json (read here,
    /// once, and handed on to <see cref="Load(LanguageModelSource, ScalarType, string?)"/>) has a decoder's model_type; else null.
    /// </summary>
    public static LanguageModelSource? Find(string spec)
    {
        if (File.Exists(spec)) return spec.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? new LanguageModelSource(spec, null) : null;
        string path = Path.Combine(spec, "config.json");
        if (!Directory.Exists(spec) || !File.Exists(path)) return null;
        try
        {
            var config = PretrainedDecoder.ReadConfig(path);
            string? type = config["model_type"] is JsonValue value && value.TryGetValue(out string? text) ? text : null;
            return type is not null && DecoderFamilies.All.Any(f => f.ModelTypes.Contains(type)) ? new LanguageModelSource(spec, config) : null;
        }
        catch (InvalidDataException)
        {
            return null;
        }
    }

    /// <summary>
    /// Loads a Hugging Face folder or a .gguf file; <paramref name="dtype"/> bf16 holds the weights in half the memory,
    /// <see cref="WeightStorage.Stored"/> keeps a GGUF's weight matrices in the file's blocks.
    /// </summary>
    /// <param name="linears">Builds the blocks' Linear layers (parameter-efficient methods wrap them); null: plain ones.</param>
    public static LanguageModel Load(string spec, WeightStorage dtype = default, string? chatTemplateFile = null, LinearFactory? linears = null)
    {
        if (File.Exists(spec) && spec.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) return LoadGguf(spec, dtype, chatTemplateFile, linears);
        if (Directory.Exists(spec)) return LoadFolder(spec, null, dtype, chatTemplateFile, linears);
        throw new FileNotFoundException($"Language model '{spec}' not found: give a Hugging Face model folder or a .gguf file", spec);
    }

    /// <summary>Loads what <see cref="Find"/> found, without reading its config.json again.</summary>
    public static LanguageModel Load(LanguageModelSource source, WeightStorage dtype = default, string? chatTemplateFile = null, LinearFactory? linears = null) =>
        source.Config is null ? LoadGguf(source.Path, dtype, chatTemplateFile, linears) : LoadFolder(source.Path, source.Config, dtype, chatTemplateFile, linears);

    /// <summary>The architecture of a Hugging Face folder or .gguf file, read and validated without loading a weight.</summary>
    public static IDecoderConfig ReadConfig(string spec)
    {
        if (File.Exists(spec) && spec.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            var (config, _) = GgufConfig(GgufModelMap.Open(spec));
            return DecoderFamilies.ForConfig(config, spec).ParseConfig(config, spec);
        }
        string path = Path.Combine(spec, "config.json");
        if (!Directory.Exists(spec) || !File.Exists(path))
            throw new FileNotFoundException($"Language model '{spec}' not found: give a Hugging Face model folder or a .gguf file", spec);
        var json = PretrainedDecoder.ReadConfig(path);
        return DecoderFamilies.ForConfig(json, path).ParseConfig(json, path);
    }

    /// <summary>The same tokenizer, template and source over another model (the base with a fine-tuned adapter).</summary>
    /// <remarks>The new instance takes over the stored weights (a model built over them is what it wraps); dispose it, not this one.</remarks>
    public LanguageModel WithModel(ICausalLanguageModel model, string source) => new(model, Tokenizer, Template, source, Notes, stored);

    /// <summary>The same tokenizer over another model, with the chat template it was fine-tuned with (null: none).</summary>
    public LanguageModel WithModel(ICausalLanguageModel model, string source, ChatTemplate? template) => new(model, Tokenizer, template, source, Notes, stored);

    /// <summary>Whether the weight matrices are kept in the file's blocks (<see cref="WeightStorage.Stored"/>).</summary>
    public bool IsStored => stored is not null;

    static LanguageModel LoadFolder(string folder, JsonObject? config, WeightStorage storage, string? chatTemplateFile, LinearFactory? linears)
    {
        var tokenizer = DecoderTokenizers.FromHuggingFace(folder);
        var template = LoadTemplate(tokenizer.ChatTemplate, Path.Combine(folder, "tokenizer_config.json: chat_template"), chatTemplateFile);
        string source = $"Hugging Face folder {Path.GetFullPath(folder)}";
        if (storage.QuantizeTo is not { } type)
        {
            // A folder's weights are dense: "stored" reads them as they are, in float32.
            var model = config is null ? PretrainedDecoder.Load(folder, storage.Dtype, linears) : PretrainedDecoder.Load(folder, config, storage.Dtype, linears);
            return new LanguageModel(model, tokenizer, template, source, []);
        }
        string configPath = Path.Combine(folder, "config.json");
        config ??= PretrainedDecoder.ReadConfig(configPath);
        var shape = DecoderFamilies.ForConfig(config, configPath).ParseConfig(config, configPath);
        var (tensors, file) = HuggingFaceCheckpoint.OpenStateDict(folder);
        var stored = StoredWeights.Quantize(tensors, shape, type, file);
        try
        {
            var notes = new List<string> { stored.Summary };
            var model = PretrainedDecoder.FromCheckpoint(config, stored.Remaining(tensors), ScalarType.Float32, file,
                stored.Wrap(linears ?? DecoderLinears.Plain), stored.Embeddings(shape.Names, shape.Vocabulary));
            return new LanguageModel(model, tokenizer, template, source, notes, stored);
        }
        catch
        {
            stored.Dispose();
            throw;
        }
    }

    static LanguageModel LoadGguf(string path, WeightStorage storage, string? chatTemplateFile, LinearFactory? linears)
    {
        storage.CheckFor(path);
        var map = GgufModelMap.Open(path);
        var data = map.Tokenizer ?? throw new InvalidDataException($"{path}: the GGUF file has no tokenizer (tokenizer.ggml.model is missing)");
        var tokenizer = DecoderTokenizers.FromData(new DecoderTokenizerData(
            data.Model, data.Pre, data.Tokens, data.TokenTypes, data.Merges, data.Scores, data.BosTokenId, data.EosTokenId,
            data.UnknownTokenId, data.PaddingTokenId, data.AddBosToken, data.AddEosToken, data.ChatTemplate, data.AddSpacePrefix), path);
        var (config, ropeNote) = GgufConfig(map);
        var types = map.File.Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Count()).Select(g => $"{g.Key} x {g.Count()}");
        var notes = new List<string> { $"tensor types: {string.Join(", ", types)}" };
        if (ropeNote is not null) notes.Add(ropeNote);
        var template = LoadTemplate(tokenizer.ChatTemplate, $"{path}: tokenizer.chat_template", chatTemplateFile);
        string source = $"GGUF file {Path.GetFullPath(path)} ({map.Architecture})";
        if (!storage.Stored)
            return new LanguageModel(PretrainedDecoder.FromCheckpoint(config, map.CheckpointTensors(), storage.Dtype, path, linears),
                tokenizer, template, source, notes);
        var shape = DecoderFamilies.ForConfig(config, path).ParseConfig(config, path);
        var stored = StoredWeights.Map(map, shape);
        try
        {
            notes.Add(stored.Summary);
            var model = PretrainedDecoder.FromCheckpoint(config, stored.Remaining(map.CheckpointTensors()), ScalarType.Float32, path,
                stored.Wrap(linears ?? DecoderLinears.Plain), stored.Embeddings(shape.Names, shape.Vocabulary));
            return new LanguageModel(model, tokenizer, template, source, notes, stored);
        }
        catch
        {
            stored.Dispose();
            throw;
        }
    }

    /// <summary>The Hugging Face config of a GGUF file, with its rope frequency factors applied (and what to say about them).</summary>
    static (JsonObject Config, string? RopeNote) GgufConfig(GgufModelMap map)
    {
        var config = map.Config;
        return (config, map.RopeFrequencyFactors is { } factors ? ApplyRopeFrequencyFactors(map, factors, config) : null);
    }

    /// <summary>
    /// Llama 3.1+ files carry their rope scaling as llama.cpp's per-frequency factors (<c>rope_freqs.weight</c>) instead of
    /// settings: the Hugging Face <c>rope_scaling</c> (llama3) that gives exactly those factors is derived and put in the
    /// config, so the model computes what llama.cpp computes and saves as transformers expects. Returns the note to show.
    /// </summary>
    static string ApplyRopeFrequencyFactors(GgufModelMap map, string tensor, JsonObject config)
    {
        if (config["rope_scaling"] is not null)
            return $"{tensor} ignored: the file also gives rope scaling settings ({config["rope_scaling"]!.ToJsonString()}), which are used";
        using var values = map.File.ReadTensor(tensor);
        var factors = values.data<float>().ToArray();
        // The config as the family's GGUF table wrote it (numbers of whatever CLR type): read through their JSON text.
        double Number(string key) => double.Parse(config[key]!.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture);
        int headDim = (int)(config["head_dim"] is null ? Number("hidden_size") / Number("num_attention_heads") : Number("head_dim"));
        double theta = config["rope_theta"] is null ? 10000 : Number("rope_theta");
        int original = map.File.TryGetInt($"{map.Architecture}.rope.scaling.original_context_length", out long given) ? (int)given : 8192;
        var (scaling, reason) = RopeScaling.FromFrequencyFactors(factors, headDim, theta, original);
        if (scaling is null)
            return $"{tensor} (per-frequency rope factors) is not applied: {reason}; outputs differ from llama.cpp's";
        config["rope_scaling"] = JsonSerializer.SerializeToNode(scaling, new JsonSerializerOptions { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull });
        return $"{tensor} applied as Llama 3 rope scaling: factor {scaling.Factor}, low_freq_factor {scaling.LowFreqFactor}, " +
               $"high_freq_factor {scaling.HighFreqFactor}, original_max_position_embeddings {scaling.OriginalMaxPositionEmbeddings}";
    }

    static ChatTemplate? LoadTemplate(string? shipped, string source, string? overrideFile)
    {
        if (overrideFile is not null)
        {
            if (!File.Exists(overrideFile)) throw new FileNotFoundException($"--chat-template: {overrideFile} does not exist", overrideFile);
            return ChatTemplate.Parse(File.ReadAllText(overrideFile), overrideFile);
        }
        return shipped is null ? null : ChatTemplate.Parse(shipped, source);
    }

    /// <summary>The prompt a chat conversation becomes: the model's template rendered, with the generation prompt.</summary>
    public string RenderChat(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        var template = Template ?? throw new ArgumentException(
            "the model ships no chat template; give one with --chat-template FILE (a Jinja file, as in tokenizer_config.json)");
        string? Token(int? id) => id is { } i ? Tokenizer.IdToToken(i) : null;
        return template.Render(messages, addGenerationPrompt, Token(Tokenizer.BosId), Token(Tokenizer.EosId));
    }

    public void Dispose()
    {
        Model.Dispose();
        stored?.Dispose();
    }
}

/// <summary>
/// How a decoder's weights are held: dense in <see cref="Dtype"/> (float32, bfloat16), or, with <see cref="Stored"/>,
/// a GGUF's weight matrices kept in the file's blocks (quantized or half precision, memory-mapped) while everything
/// else computes in float32. A <see cref="ScalarType"/> converts to the dense form.
/// </summary>
public readonly record struct WeightStorage
{
    readonly ScalarType? dtype;

    /// <param name="dtype">The dense dtype (float32 when stored).</param>
    /// <param name="stored">Keep a GGUF's matrices in their blocks.</param>
    public WeightStorage(ScalarType dtype, bool stored) => (this.dtype, Stored) = (dtype, stored);

    /// <summary>
    /// A Hugging Face folder's weight matrices quantized on load into blocks of <see cref="QuantizeTo"/> (as llama.cpp's
    /// quantizer writes them) and computed on as a GGUF's stored blocks are.
    /// </summary>
    public static WeightStorage Quantized(GgufTensorType type) => new(ScalarType.Float32, true) { QuantizeTo = type };

    /// <summary>The block type a Hugging Face folder's matrices are quantized to on load, or null.</summary>
    public GgufTensorType? QuantizeTo { get; private init; }

    /// <summary>The block types <c>--dtype</c> quantizes a folder to, by the names llama.cpp's quantize tool gives them.</summary>
    public static IReadOnlyDictionary<string, GgufTensorType> QuantizeTypes { get; } = new Dictionary<string, GgufTensorType>
    {
        ["q8_0"] = GgufTensorType.Q8_0, ["q4_0"] = GgufTensorType.Q4_0, ["q4_1"] = GgufTensorType.Q4_1, ["q5_0"] = GgufTensorType.Q5_0,
        ["q5_1"] = GgufTensorType.Q5_1, ["q4_k"] = GgufTensorType.Q4_K, ["q5_k"] = GgufTensorType.Q5_K, ["q6_k"] = GgufTensorType.Q6_K,
    };

    /// <summary>The dtype of dense weights and of the computation; float32 for <c>default</c>, as for every load before this type.</summary>
    public ScalarType Dtype => dtype ?? ScalarType.Float32;

    public bool Stored { get; }

    /// <summary>The matrices as the GGUF file stores them.</summary>
    public static WeightStorage AsStored { get; } = new(ScalarType.Float32, true);

    public static implicit operator WeightStorage(ScalarType dtype) => new(dtype, false);

    /// <summary>
    /// <c>stored</c>, <c>fp32</c> or <c>bf16</c>, as <c>--dtype</c> takes them; <paramref name="option"/> names the flag in errors.
    /// </summary>
    public static WeightStorage Parse(string text, string option = "--dtype") => text switch
    {
        "stored" => AsStored,
        "fp32" or "float32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        _ when QuantizeTypes.TryGetValue(text, out var type) => Quantized(type),
        _ => throw new ArgumentException($"{option} '{text}' is not known: use stored (a GGUF's blocks as they are), fp32, bf16, " +
                                         $"or a block type a Hugging Face folder is quantized to on load ({string.Join(", ", QuantizeTypes.Keys)})"),
    };

    /// <summary>Refuses quantizing on load where the model is a GGUF file, whose blocks are already chosen.</summary>
    public WeightStorage CheckFor(string model, string option = "--dtype")
    {
        if (QuantizeTo is not null && File.Exists(model) && model.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"{option} {this} quantizes a Hugging Face folder on load; {model} is a GGUF file, whose blocks are " +
                                        "used as they are (--dtype stored); to change its types, export it with --format gguf --dtype " + this);
        return this;
    }

    public override string ToString() => QuantizeTo is { } type ? QuantizeTypes.First(kv => kv.Value == type).Key
        : Stored ? "stored" : Dtype == ScalarType.BFloat16 ? "bf16" : "fp32";
}

/// <summary>A language model found on disk: a GGUF file (<see cref="Config"/> null) or a Hugging Face folder with its config.json as read.</summary>
public sealed record LanguageModelSource(string Path, JsonObject? Config);
