using SharpTune.Models;
using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// What the four prompt methods share: freezing, and the adapter folder. Follows PEFT's
/// <c>PromptLearningConfig</c> and its save format: one tensor <c>prompt_embeddings</c>, the module's
/// <see cref="PromptModule.Output"/>, and the head under <c>base_model.classifier.*</c> (where PEFT's prompt
/// models keep it; LoRA's have <c>base_model.model.</c>, also accepted on load). Beyond PEFT
/// (peft#1607) the whole module goes into <see cref="EncoderFile"/> beside it, so training can resume with
/// the MLP, LSTM or projection; PEFT ignores that file.
/// </summary>
public abstract class PromptLearningMethod : IPeftMethod
{
    /// <summary>The full prompt module (<c>embedding.weight</c>, <c>mlp_head.0.weight</c>, ...), SharpTune's own file.</summary>
    public const string EncoderFile = "sharptune_prompt_encoder.safetensors";

    public abstract string Name { get; }
    public abstract string PeftType { get; }
    public abstract double DefaultLearningRate { get; }
    public abstract void Validate(PeftSettings settings, IBackboneShape backbone);
    public abstract long TrainableParameters(PeftSettings settings, IBackboneShape backbone);
    public abstract nn.Module? CreatePromptEncoder(PeftSettings settings, IBackboneShape backbone, Tensor wordEmbeddings);

    /// <summary>The method's own config fields (encoder_hidden_size, prompt_tuning_init, ...).</summary>
    protected abstract void AddConfigFields(IDictionary<string, object?> config, PeftSettings settings, IBackboneShape backbone, string baseModelNameOrPath);

    /// <summary>
    /// PEFT's <c>token_dim</c> and <c>num_attention_heads</c>: the hidden size and heads, except for prefixes over grouped-query
    /// attention, where PEFT sizes them by the key/value heads (peft#1901).
    /// </summary>
    protected virtual (int TokenDim, int Heads) PeftDimensions(IBackboneShape backbone) => (backbone.HiddenSize, backbone.AttentionHeads);

    /// <summary>Reads the method's own config fields back into <paramref name="settings"/>.</summary>
    protected abstract PeftSettings ReadConfigFields(JsonObject config, PeftSettings settings, string source);

    /// <summary>Prompt methods wrap no Linear layer.</summary>
    public LinearFactory? Linears(PeftSettings settings, IBackboneShape backbone, LinearFactory plain) => null;

    public virtual bool Reads(JsonObject adapterConfig) => adapterConfig["peft_type"]?.GetValue<string>() == PeftType;

    /// <summary>The backbone frozen; the prompt module (unless it is a fixed table) and the head train.</summary>
    public void Freeze(ITunableModel model, PeftSettings settings)
    {
        bool promptTrains = !ModuleOf(model).IsFixed;
        foreach (var (name, parameter) in model.NamedParameters())
            parameter.requires_grad = name.StartsWith("prompt_encoder.", StringComparison.Ordinal) ? promptTrains : model.IsHead(name);
    }

    public void SaveAdapter(string folder, ITunableModel model, PeftSettings settings, string baseModelNameOrPath)
    {
        var module = ModuleOf(model);
        var backbone = model.Backbone;
        Validate(settings, backbone);
        var (tokenDim, heads) = PeftDimensions(backbone);
        bool crf = model.NamedParameters().Any(p => p.Name.StartsWith("crf.", StringComparison.Ordinal));
        if (settings.VirtualTokens != module.VirtualTokens)
            throw new ArgumentException($"--virtual-tokens {settings.VirtualTokens} does not match the model's prompt module ({module.VirtualTokens}).");
        var config = new Dictionary<string, object?>
        {
            ["base_model_name_or_path"] = baseModelNameOrPath,
            ["inference_mode"] = true, // what PEFT's save_pretrained writes
            ["modules_to_save"] = model.ModulesToSave.Count == 0 ? null : crf ? new[] { "classifier", "score", "crf" } : ["classifier", "score"],
            ["num_attention_heads"] = heads,
            ["num_layers"] = backbone.LayerCount,
            ["num_transformer_submodules"] = 1,
            ["num_virtual_tokens"] = module.VirtualTokens,
            ["peft_type"] = PeftType,
            ["revision"] = null,
            ["task_type"] = model.PeftTaskType,
            ["token_dim"] = tokenDim,
        };
        AddConfigFields(config, settings, backbone, baseModelNameOrPath);
        using var scope = NewDisposeScope();
        Tensor table;
        using (no_grad()) table = module.Output().detach().to(ScalarType.Float32); // (P, O)
        var tensors = AdapterFiles.HeadTensors(model).ToDictionary(kv => PeftHeadKey(kv.Key), kv => kv.Value);
        tensors["prompt_embeddings"] = table;
        AdapterFiles.Write(folder, config, tensors);

        string encoderPath = Path.Combine(folder, EncoderFile);
        if (module.IsFixed)
        {
            // Only the table is known: a full file from an earlier save would no longer match it.
            File.Delete(encoderPath);
            return;
        }
        var weights = module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        SafeTensors.Save(encoderPath, weights, new Dictionary<string, string> { ["format"] = "pt", ["sharptune_method"] = Name });
    }

    public PeftSettings ReadSettings(JsonObject adapterConfig, string source)
    {
        if (!Reads(adapterConfig))
            throw new InvalidDataException($"{source}: peft_type '{adapterConfig["peft_type"]}' with these fields is not a {Name} adapter");
        var settings = new PeftSettings { VirtualTokens = ConfigInt(adapterConfig, "num_virtual_tokens", source) };
        return ReadConfigFields(adapterConfig, settings, source);
    }

    /// <summary>
    /// Loads the head and the prompt module. With <see cref="EncoderFile"/> present the module is restored
    /// exactly (training can resume); without it, from <c>prompt_embeddings</c> alone. Call <see cref="Freeze"/>
    /// afterwards to set what trains.
    /// </summary>
    public void LoadAdapter(string folder, ITunableModel model)
    {
        var module = ModuleOf(model);
        var config = AdapterFiles.ReadConfig(folder);
        string configPath = Path.Combine(folder, AdapterFiles.ConfigFile);
        if (!Reads(config))
            throw new InvalidDataException($"{configPath}: peft_type '{config["peft_type"]}' with these fields is not a {Name} adapter");
        var backbone = model.Backbone;
        foreach (var (key, expected) in new[] { ("num_virtual_tokens", module.VirtualTokens), ("token_dim", PeftDimensions(backbone).TokenDim), ("num_layers", backbone.LayerCount) })
        {
            int actual = ConfigInt(config, key, configPath);
            if (actual != expected) throw new InvalidDataException($"{configPath}: {key} is {actual}, the model has {expected}");
        }

        using var scope = NewDisposeScope();
        string weightsPath = Path.Combine(folder, AdapterFiles.WeightsFile);
        var tensors = AdapterFiles.ReadWeights(folder);
        AdapterFiles.LoadHead(model, tensors.ToDictionary(kv => SharedHeadKey(kv.Key), kv => kv.Value), weightsPath);
        string encoderPath = Path.Combine(folder, EncoderFile);
        if (File.Exists(encoderPath))
        {
            var (_, metadata, _) = SafeTensors.ReadHeader(encoderPath);
            if (metadata.TryGetValue("sharptune_method", out string? writer) && writer != Name)
                throw new InvalidDataException($"{encoderPath}: written by the {writer} method, the model uses {Name}");
            var unexpected = StateDictLoader.Load(module, SafeTensors.Load(encoderPath), encoderPath);
            if (unexpected.Count > 0)
                throw new InvalidDataException($"{encoderPath}: weights the {Name} module does not have: {string.Join(", ", unexpected)}");
            module.Unfix();
            return;
        }
        if (!tensors.TryGetValue("prompt_embeddings", out var table))
            throw new InvalidDataException($"{weightsPath}: the adapter lacks the tensor prompt_embeddings");
        if (table.shape.Length != 2 || table.shape[0] != module.VirtualTokens || table.shape[1] != module.OutputSize)
            throw new InvalidDataException(
                $"{weightsPath}: prompt_embeddings has shape [{string.Join(", ", table.shape)}], the model expects [{module.VirtualTokens}, {module.OutputSize}]");
        module.LoadPromptEmbeddings(table);
    }

    // For prompt methods PEFT's base_model IS the transformers model (no LoraModel wrapper with .model), so the
    // head's modules_to_save key is base_model.classifier.weight; PEFT's loader looks up exactly that key.
    const string SharedHeadPrefix = "base_model.model.", PeftHeadPrefix = "base_model.";

    static string PeftHeadKey(string key) =>
        key.StartsWith(SharedHeadPrefix, StringComparison.Ordinal) ? PeftHeadPrefix + key[SharedHeadPrefix.Length..] : key;

    /// <summary>Back to <see cref="AdapterFiles.HeadTensors"/>' names; keys already in that form (LoRA-style) pass.</summary>
    static string SharedHeadKey(string key) =>
        key.StartsWith(PeftHeadPrefix, StringComparison.Ordinal) && !key.StartsWith(SharedHeadPrefix, StringComparison.Ordinal)
            ? SharedHeadPrefix + key[PeftHeadPrefix.Length..]
            : key;

    /// <summary>The model's prompt module, which must be this method's.</summary>
    protected PromptModule ModuleOf(ITunableModel model) =>
        model.PromptEncoder as PromptModule is { } module && IsOwnModule(module)
            ? module
            : throw new ArgumentException($"The model was not built with the {Name} prompt module (got {model.PromptEncoder?.GetType().Name ?? "none"}).");

    /// <summary>Whether the virtual tokens are input embeddings in front of the text (prompt tuning, P-tuning) rather than key/value prefixes.</summary>
    protected abstract bool InputSide { get; }

    /// <summary>Input-side prompts take positions everywhere; key/value prefixes where the backbone's real tokens follow them.</summary>
    public int PositionsTaken(PeftSettings settings, IBackboneShape backbone) =>
        InputSide || backbone.PrefixTakesPositions ? settings.VirtualTokens : 0;

    public bool AddsVirtualTokens => true;

    /// <summary>Whether <paramref name="module"/> is the kind this method builds.</summary>
    protected abstract bool IsOwnModule(PromptModule module);

    /// <summary>P must be positive; input-side prompts must also leave room for real tokens among the positions.</summary>
    internal static void CheckVirtualTokens(PeftSettings settings, IBackboneShape backbone, bool inputSide)
    {
        if (settings.VirtualTokens < 1)
            throw new ArgumentException($"--virtual-tokens (VirtualTokens) must be at least 1, got {settings.VirtualTokens}.");
        // Decoders' real tokens follow a prefix's positions too, so there it also takes positions.
        if ((inputSide || backbone.PrefixTakesPositions) && settings.VirtualTokens >= backbone.MaxPositions)
            throw new ArgumentException(
                $"--virtual-tokens (VirtualTokens) {settings.VirtualTokens} leaves no room for text: the model has {backbone.MaxPositions} positions.");
    }

    protected static int ConfigInt(JsonObject config, string key, string source) =>
        config[key] is JsonValue value && value.TryGetValue(out int result)
            ? result
            : throw new InvalidDataException($"{source}: {key} must be an integer, got {config[key]?.ToJsonString() ?? "nothing"}");

    protected static string? ConfigString(JsonObject config, string key, string source) =>
        config[key] switch
        {
            null => null,
            JsonValue value when value.TryGetValue(out string? text) => text,
            var other => throw new InvalidDataException($"{source}: {key} must be a string, got {other.ToJsonString()}"),
        };

    protected static bool ConfigBool(JsonObject config, string key, string source, bool fallback) =>
        config[key] switch
        {
            null => fallback,
            JsonValue value when value.TryGetValue(out bool flag) => flag,
            var other => throw new InvalidDataException($"{source}: {key} must be true or false, got {other.ToJsonString()}"),
        };
}
