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
    public string? PeftType => Type;

    /// <summary>METHODS.md: 3e-4 .. 5e-4 for LoRA; the few adapter weights start at zero and need a rate ten times full fine-tuning's.</summary>
    public double DefaultLearningRate => 5e-4;

    public void Validate(PeftSettings settings, IBackboneShape backbone) => LoraOptions.From(settings, backbone);

    /// <summary>A and B of rank r on every targeted Linear layer: r·(in + out) each.</summary>
    public long TrainableParameters(PeftSettings settings, IBackboneShape backbone) => backbone.LinearSites
        .Where(s => LinearTargets.MatchesAny(backbone, s.Path, settings.LoraTargets ?? backbone.Names.LoraTargets))
        .Sum(s => (long)settings.LoraR * (s.InFeatures + s.OutFeatures));

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
        AdapterTensors.TrainOnly(model, name => IsLoraParameter(name) || TrainsBias(names, name, options.Bias, wrapped));
    }

    public void SaveAdapter(string folder, ITunableModel model, PeftSettings settings, string baseModelNameOrPath)
    {
        var options = LoraOptions.From(settings, model.Backbone);
        var wrapped = WrappedLayers(model);
        var names = model.Backbone.Names;
        foreach (var (path, layer) in wrapped)
            if (layer.Rank != options.R || Math.Abs(layer.Scaling - options.Scaling) > 1e-12)
                throw new ArgumentException($"{path} was built with r={layer.Rank}, alpha/r={layer.Scaling}; the settings say r={options.R}, alpha/r={options.Scaling}");

        var tensors = AdapterTensors.Collect(model, name =>
            IsLoraParameter(name) ? AdapterTensors.PeftKey(name) : TrainsBias(names, name, options.Bias, wrapped) ? BiasKey(name, wrapped) : null);

        // Only fields PEFT's LoraConfig has had since v0.4, so old and new PEFT both load the file (PEFT before
        // 0.14 rejects unknown keys). Fields left out (use_rslora, use_dora, rank_pattern, ...) default to off.
        // modules_to_save names the classifier only: transformers' task models have no crf, so PEFT would find
        // nothing to wrap; crf.* tensors are still saved under base_model.model.crf.* for SharpTune (PEFT
        // loads with strict=False and reports them as unexpected keys).
        var config = new Dictionary<string, object?>
        {
            ["base_model_name_or_path"] = baseModelNameOrPath,
            ["bias"] = options.Bias,
            ["fan_in_fan_out"] = wrapped.Values.Any(l => l.IsTransposed),
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["layers_pattern"] = null,
            ["layers_to_transform"] = null,
            ["lora_alpha"] = options.Alpha,
            ["lora_dropout"] = options.Dropout,
            ["modules_to_save"] = model.ModulesToSave.Count == 0 ? null : model.ModulesToSave,
            ["peft_type"] = Type,
            ["r"] = options.R,
            ["revision"] = null,
            ["target_modules"] = options.Targets,
            ["task_type"] = model.PeftTaskType,
        };
        AdapterFiles.Write(folder, config, tensors);
    }

    public PeftSettings ReadSettings(JsonObject adapterConfig, string source)
    {
        AdapterTensors.CheckPeftType(adapterConfig, source, Type);
        AdapterTensors.RejectUnsupported(adapterConfig, source,
            ("use_dora", "weight-decomposed LoRA"), ("use_rslora", "rank-stabilised scaling alpha/sqrt(r)"),
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
        };
    }

    public void LoadAdapter(string folder, ITunableModel model)
    {
        var (config, configPath) = AdapterTensors.ReadConfig(folder, Type);
        var settings = ReadSettings(config, configPath);
        var wrapped = WrappedLayers(model);
        foreach (var (path, layer) in wrapped)
        {
            if (layer.IsMerged) throw new InvalidOperationException($"{path} is merged; unmerge before loading an adapter into it");
            if (Math.Abs(layer.Scaling - settings.LoraAlpha / settings.LoraR) > 1e-12)
                throw new InvalidDataException($"{configPath}: lora_alpha/r is {settings.LoraAlpha}/{settings.LoraR}, the model's {path} was built with scaling {layer.Scaling}");
        }
        // A wrapped layer's bias: PEFT >= 0.7 saves it as <path>.base_layer.bias, older versions as <path>.bias.
        AdapterTensors.Load(folder, model, name =>
            IsLoraParameter(name) ? [AdapterTensors.PeftKey(name)]
            : TrainsBias(model.Backbone.Names, name, settings.LoraBias, wrapped) ? [BiasKey(name, wrapped), AdapterTensors.PeftKey(name)]
            : []);
    }

    static Dictionary<string, LoraLinear> WrappedLayers(ITunableModel model) => AdapterTensors.WrappedLayers<LoraLinear>(model, nameof(LoraMethod));

    static bool IsLoraParameter(string name) =>
        name.Contains(".lora_A.", StringComparison.Ordinal) || name.Contains(".lora_B.", StringComparison.Ordinal);

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
