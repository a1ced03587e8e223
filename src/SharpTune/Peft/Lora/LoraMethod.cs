using SharpTune.Models;
using System.Text.Json.Nodes;
using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lora;

/// <summary>
/// LoRA (Hu et al. 2021) as PEFT does it: the targeted Linear layers become <see cref="LoraLinear"/>; only
/// <c>lora_A</c>/<c>lora_B</c>, the biases chosen by <c>bias</c> and the head train. The adapter folder is
/// PEFT's: keys <c>base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight</c> (the adapter
/// name "default" stripped, as PEFT saves), the head under <c>base_model.model.classifier.*</c>.
/// </summary>
public sealed class LoraMethod : IPeftMethod
{
    public const string Type = "LORA";

    public string Name => "lora";

    /// <summary>PiSSA and OLoRA leave the base as it is, stored blocks included: nothing is re-quantized, nothing refused.</summary>
    public string? BaseNote(PeftSettings settings, bool storedBase) => settings.LoraInit is "pissa" or "olora"
        ? $"--lora-init {settings.LoraInit}: the start B0 A0 is subtracted in the update, not from the weight (as PEFT does), so the base " +
          (storedBase ? "stays in its stored blocks and no residual is re-quantized" : "stays as loaded") +
          $"; the adapter is saved converted to plain LoRA of rank {2 * settings.LoraR}"
        : null;
    public string? PeftType => Type;

    /// <summary>METHODS.md: 3e-4 .. 5e-4 for LoRA; the few adapter weights start at zero and need a rate ten times full fine-tuning's.</summary>
    public double DefaultLearningRate => 5e-4;

    public void Validate(PeftSettings settings, IBackboneShape backbone) => LoraOptions.From(settings, backbone);

    /// <summary>A and B of rank r on every targeted Linear layer: r·(in + out) each, and DoRA's magnitude (out).</summary>
    public long TrainableParameters(PeftSettings settings, IBackboneShape backbone) => backbone.LinearSites
        .Where(s => LinearTargets.MatchesAny(backbone, s.Path, settings.LoraTargets ?? backbone.Names.LoraTargets))
        .Sum(s => (long)settings.LoraR * (s.InFeatures + s.OutFeatures) + (settings.LoraDora ? s.OutFeatures : 0));

    public LinearFactory? Linears(PeftSettings settings, IBackboneShape backbone, LinearFactory plain)
    {
        var options = LoraOptions.From(settings, backbone);
        return site => LinearTargets.MatchesAny(backbone, site.Path, options.Targets) ? new LoraLinear(site, options) : plain(site);
    }

    public nn.Module? CreatePromptEncoder(PeftSettings settings, IBackboneShape backbone, Tensor wordEmbeddings) => null;

    public void Freeze(ITunableModel model, PeftSettings settings)
    {
        var options = LoraOptions.From(settings, model.Backbone);
        var wrapped = WrappedLayers(model);
        var names = model.Backbone.Names;
        // Every training path freezes once the pretrained weights are in: the starts that read them (PiSSA, OLoRA, DoRA's
        // magnitude) are made here, before a data-parallel job broadcasts the trainable weights or a resume loads them.
        foreach (var layer in wrapped.Values) layer.InitializeFromBase();
        AdapterTensors.TrainOnly(model, name => IsLoraParameter(name) || TrainsBias(names, name, options.Bias, wrapped));
    }

    public void SaveAdapter(string folder, ITunableModel model, PeftSettings settings, string baseModelNameOrPath)
    {
        var options = LoraOptions.From(settings, model.Backbone);
        var wrapped = WrappedLayers(model);
        var names = model.Backbone.Names;
        foreach (var (path, layer) in wrapped)
        {
            if (layer.Rank != options.R || Math.Abs(layer.Scaling - options.Scaling) > 1e-12 || layer.IsDora != options.UseDora || layer.Init != options.Init)
                throw new ArgumentException($"{path} was built with r={layer.Rank}, scaling {layer.Scaling}, DoRA {layer.IsDora}, init {layer.Init}; " +
                    $"the settings say r={options.R}, scaling {options.Scaling}, DoRA {options.UseDora}, init {options.Init}");
            if (layer.IsMerged) throw new InvalidOperationException($"{path} is merged; unmerge before saving its adapter");
        }

        // PiSSA and OLoRA are saved converted to plain LoRA over the original weight, as PEFT's save_pretrained does with
        // path_initial_model_for_weight_conversion: pairs of rank 2r ([A; A0], [B, -B0]), r and lora_alpha doubled (alpha
        // times sqrt 2 under rsLoRA, so the scaling stays), init_lora_weights true. Any PEFT reader then applies the
        // adapter to the unchanged base, and so does SharpTune.
        bool converted = options.InitFromWeight;
        var pairs = new List<Tensor>();
        var tensors = AdapterTensors.Collect(model, name =>
            IsLoraParameter(name) ? AdapterTensors.PeftKey(name) : TrainsBias(names, name, options.Bias, wrapped) ? BiasKey(name, wrapped) : null);
        foreach (var (path, layer) in wrapped)
        {
            var (a, b) = layer.PlainPair();
            pairs.Add(a);
            pairs.Add(b);
            tensors[AdapterTensors.PeftKey($"{path}.lora_A.weight")] = a;
            tensors[AdapterTensors.PeftKey($"{path}.lora_B.weight")] = b;
        }

        // Only fields PEFT's LoraConfig has had since v0.4, so old and new PEFT both load the file (PEFT before
        // 0.14 rejects unknown keys); use_dora (0.9) and use_rslora (0.7) are written only when on. Fields left out
        // (rank_pattern, ...) default to off.
        // modules_to_save names the classifier only: transformers' task models have no crf, so PEFT would find
        // nothing to wrap; crf.* tensors are still saved under base_model.model.crf.* for SharpTune (PEFT
        // loads with strict=False and reports them as unexpected keys).
        var config = new Dictionary<string, object?>
        {
            ["base_model_name_or_path"] = baseModelNameOrPath,
            ["bias"] = options.Bias,
            ["fan_in_fan_out"] = wrapped.Values.Any(l => l.IsTransposed),
            ["inference_mode"] = true,
            ["init_lora_weights"] = options.Init == "gaussian" ? "gaussian" : true,
            ["layers_pattern"] = null,
            ["layers_to_transform"] = null,
            ["lora_alpha"] = !converted ? options.Alpha : options.UseRsLora ? options.Alpha * Math.Sqrt(2) : 2 * options.Alpha,
            ["lora_dropout"] = options.Dropout,
            ["modules_to_save"] = model.ModulesToSave.Count == 0 ? null : model.ModulesToSave,
            ["peft_type"] = Type,
            ["r"] = converted ? 2 * options.R : options.R,
            ["revision"] = null,
            ["target_modules"] = options.Targets,
            ["task_type"] = model.PeftTaskType,
        };
        if (options.UseDora) config["use_dora"] = true;
        if (options.UseRsLora) config["use_rslora"] = true;
        try
        {
            AdapterFiles.Write(folder, config, tensors);
        }
        finally
        {
            foreach (var pair in pairs) pair.Dispose();
        }
    }

    public PeftSettings ReadSettings(JsonObject adapterConfig, string source)
    {
        AdapterTensors.CheckPeftType(adapterConfig, source, Type);
        AdapterTensors.RejectUnsupported(adapterConfig, source,
            ("layers_to_transform", "LoRA on some layers only"),
            ("rank_pattern", "per-layer ranks"), ("alpha_pattern", "per-layer alphas"), ("exclude_modules", "excluded modules"),
            ("lora_bias", "a bias on lora_B"), ("layer_replication", "replicated layers"));
        // Absent keys take PEFT's LoraConfig defaults (r 8, alpha 8, dropout 0, bias none; BERT targets query, value).
        string bias = AdapterTensors.ReadString(adapterConfig, "bias", source, "none");
        if (!LoraOptions.BiasModes.Contains(bias))
            throw new InvalidDataException($"{source}: bias is '{bias}', expected none, all or lora_only");
        return new PeftSettings
        {
            LoraR = AdapterTensors.ReadInt(adapterConfig, "r", source, 8),
            LoraAlpha = AdapterTensors.ReadDouble(adapterConfig, "lora_alpha", source, 8),
            LoraDropout = AdapterTensors.ReadDouble(adapterConfig, "lora_dropout", source, 0),
            // Absent: null, the family's default (PEFT's table), resolved against the model it is loaded into.
            LoraTargets = adapterConfig["target_modules"] is null ? null : AdapterTensors.ReadNameList(adapterConfig, "target_modules", source),
            LoraBias = bias,
            LoraDora = ReadFlag(adapterConfig, "use_dora", source),
            LoraRsLora = ReadFlag(adapterConfig, "use_rslora", source),
            LoraInit = ReadInit(adapterConfig, source),
        };
    }

    static bool ReadFlag(JsonObject config, string key, string source) => config[key] switch
    {
        null => false,
        JsonValue v when v.TryGetValue(out bool flag) => flag,
        var other => throw new InvalidDataException($"{source}: {key} is {other.ToJsonString()}, expected true or false"),
    };

    /// <summary>
    /// PEFT's <c>init_lora_weights</c>: true or false (the pair is read from the file anyway), "gaussian", and "pissa" or
    /// "olora" (an adapter saved without conversion: it applies over the base less its starting pair, which is rebuilt from
    /// the base as PEFT rebuilds it). Initialisations whose start cannot be rebuilt from the base alone are refused.
    /// </summary>
    static string ReadInit(JsonObject config, string source)
    {
        switch (config["init_lora_weights"])
        {
            case null:
                return LoraOptions.Kaiming;
            case JsonValue v when v.TryGetValue(out bool _):
                return LoraOptions.Kaiming;
            case JsonValue v when v.TryGetValue(out string? name) && LoraOptions.Inits.Contains(name.ToLowerInvariant()) && name.ToLowerInvariant() != LoraOptions.Kaiming:
                return name.ToLowerInvariant();
            case var other:
                throw new InvalidDataException(
                    $"{source}: init_lora_weights = {other.ToJsonString()} is not supported by SharpTune (true, false, \"gaussian\", \"pissa\" and \"olora\" are; " +
                    "a randomised or data-driven start such as pissa_niter_K, loftq, corda or eva cannot be rebuilt from the base: save that adapter converted, " +
                    "with path_initial_model_for_weight_conversion)");
        }
    }

    public void LoadAdapter(string folder, ITunableModel model)
    {
        var (config, configPath) = AdapterTensors.ReadConfig(folder, Type);
        var settings = ReadSettings(config, configPath);
        var options = LoraOptions.From(settings, model.Backbone);
        var wrapped = WrappedLayers(model);
        foreach (var (path, layer) in wrapped)
        {
            if (layer.IsMerged) throw new InvalidOperationException($"{path} is merged; unmerge before loading an adapter into it");
            if (Math.Abs(layer.Scaling - options.Scaling) > 1e-12)
                throw new InvalidDataException($"{configPath}: lora_alpha {settings.LoraAlpha} over r {settings.LoraR}{(settings.LoraRsLora ? " (rsLoRA)" : "")} " +
                    $"gives scaling {options.Scaling}, the model's {path} was built with scaling {layer.Scaling}");
            if (layer.IsDora != options.UseDora || layer.Init != options.Init)
                throw new InvalidDataException($"{configPath}: use_dora {options.UseDora}, init {options.Init}; the model's {path} was built with DoRA {layer.IsDora}, init {layer.Init}");
            layer.InitializeFromBase(); // a PiSSA/OLoRA start rebuilt from the base (the saved pair then replaces the pair)
        }
        // A wrapped layer's bias: PEFT >= 0.7 saves it as <path>.base_layer.bias, older versions as <path>.bias.
        AdapterTensors.Load(folder, model, name =>
            IsLoraParameter(name) ? [AdapterTensors.PeftKey(name)]
            : TrainsBias(model.Backbone.Names, name, settings.LoraBias, wrapped) ? [BiasKey(name, wrapped), AdapterTensors.PeftKey(name)]
            : []);
        foreach (var layer in wrapped.Values) layer.ClearNormCache();
    }

    static Dictionary<string, LoraLinear> WrappedLayers(ITunableModel model) => AdapterTensors.WrappedLayers<LoraLinear>(model, nameof(LoraMethod));

    static bool IsLoraParameter(string name) =>
        name.Contains(".lora_A.", StringComparison.Ordinal) || name.Contains(".lora_B.", StringComparison.Ordinal) || name.EndsWith(MagnitudeSuffix, StringComparison.Ordinal);

    /// <summary>DoRA's magnitude: the parameter <c>&lt;path&gt;.lora_magnitude_vector</c>, saved by PEFT under the same name (it drops the ".weight" of its module).</summary>
    const string MagnitudeSuffix = ".lora_magnitude_vector";

    static string Parent(string name) => name[..name.LastIndexOf('.')];

    /// <summary>PEFT's <c>bias</c>: all trains every bias of the backbone, lora_only those of the LoRA layers.</summary>
    static bool TrainsBias(BackboneNames names, string name, string bias, IReadOnlyDictionary<string, LoraLinear> wrapped) =>
        names.IsBackbone(name) && name.EndsWith(".bias", StringComparison.Ordinal) && bias switch
        {
            "all" => true,
            "lora_only" => wrapped.ContainsKey(Parent(name)),
            _ => false,
        };

    /// <summary>Where PEFT saves a bias: under <c>base_layer</c> for a wrapped layer, else the plain key.</summary>
    static string BiasKey(string name, IReadOnlyDictionary<string, LoraLinear> wrapped) =>
        wrapped.ContainsKey(Parent(name)) ? AdapterTensors.PeftKey($"{Parent(name)}.base_layer.bias") : AdapterTensors.PeftKey(name);
}
