using SharpTune.Models;
using System.Text.Json.Nodes;
using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Peft.IA3;

/// <summary>
/// IA3 (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
/// Learning") as PEFT does it: the targeted Linear layers become <see cref="Ia3Linear"/>; only the
/// <c>ia3_l</c> vectors and the head train. Keys are PEFT's:
/// <c>base_model.model.bert.encoder.layer.0.attention.self.key.ia3_l</c>, the head under <c>base_model.model.classifier.*</c>.
/// </summary>
public sealed class Ia3Method : IPeftMethod
{
    public const string Type = "IA3";

    public string Name => "ia3";
    public string? PeftType => Type;

    /// <summary>
    /// 3e-3, the rate the IA3 paper (T-Few) trains with. The vectors start at 1 and Adam moves each entry by
    /// about the learning rate per step, so at LoRA's 5e-4 a scale would change by only 0.05 % a step; IA3 has
    /// far fewer parameters than LoRA and needs the larger steps to move in a short run.
    /// </summary>
    public double DefaultLearningRate => 3e-3;

    public void Validate(PeftSettings settings, IBackboneShape backbone) => Ia3Options.From(settings, backbone);

    /// <summary>One scaling vector per targeted layer: over its input for feed-forward layers, its output for the others.</summary>
    public long TrainableParameters(PeftSettings settings, IBackboneShape backbone)
    {
        var targets = settings.Ia3Targets ?? backbone.Names.Ia3Targets;
        var feedForward = settings.Ia3FeedForward ?? backbone.Names.Ia3FeedForward;
        return backbone.LinearSites.Where(s => LinearTargets.MatchesAny(backbone, s.Path, targets))
            .Sum(s => (long)(LinearTargets.MatchesFeedForward(backbone, s.Path, feedForward) ? s.InFeatures : s.OutFeatures));
    }

    public LinearFactory? Linears(PeftSettings settings, IBackboneShape backbone, LinearFactory plain)
    {
        var options = Ia3Options.From(settings, backbone);
        return site => options.Wraps(site.Path) ? new Ia3Linear(site, options.IsFeedForward(site.Path)) : plain(site);
    }

    public nn.Module? CreatePromptEncoder(PeftSettings settings, IBackboneShape backbone, Tensor wordEmbeddings) => null;

    public void Freeze(ITunableModel model, PeftSettings settings)
    {
        Ia3Options.From(settings, model.Backbone);
        WrappedLayers(model);
        AdapterTensors.TrainOnly(model, IsIa3Parameter);
    }

    public void SaveAdapter(string folder, ITunableModel model, PeftSettings settings, string baseModelNameOrPath)
    {
        var options = Ia3Options.From(settings, model.Backbone);
        string prefix = model.Backbone.Names.ParameterPrefix;
        foreach (var (path, layer) in WrappedLayers(model))
            if (layer.IsFeedForward != options.IsFeedForward(path[prefix.Length..]))
                throw new ArgumentException($"{path} was built {(layer.IsFeedForward ? "" : "not ")}as feed-forward; the settings' feedforward_modules say otherwise");

        var tensors = AdapterTensors.Collect(model, name => IsIa3Parameter(name) ? AdapterTensors.PeftKey(name) : null);

        // IA3Config fields that exist since PEFT v0.4 (older PEFT rejects unknown keys). modules_to_save: the
        // classifier; crf.* tensors ride along for SharpTune only (see LoraMethod).
        var config = new Dictionary<string, object?>
        {
            ["base_model_name_or_path"] = baseModelNameOrPath,
            ["fan_in_fan_out"] = model.Backbone.LinearSites.Any(s => s.Transposed && options.Wraps(s.Path)),
            ["feedforward_modules"] = options.FeedForward,
            ["inference_mode"] = true,
            ["init_ia3_weights"] = true,
            ["modules_to_save"] = model.ModulesToSave.Count == 0 ? null : model.ModulesToSave,
            ["peft_type"] = Type,
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
            ("exclude_modules", "excluded modules"));
        // Absent keys: null, the family's defaults (PEFT's TRANSFORMERS_MODELS_TO_IA3_*_MAPPING), resolved against the model.
        return new PeftSettings
        {
            Ia3Targets = adapterConfig["target_modules"] is null ? null : AdapterTensors.ReadNameList(adapterConfig, "target_modules", source),
            Ia3FeedForward = adapterConfig["feedforward_modules"] is null ? null : AdapterTensors.ReadNameList(adapterConfig, "feedforward_modules", source),
        };
    }

    public void LoadAdapter(string folder, ITunableModel model)
    {
        var (config, configPath) = AdapterTensors.ReadConfig(folder, Type);
        ReadSettings(config, configPath);
        foreach (var (path, layer) in WrappedLayers(model))
            if (layer.IsMerged) throw new InvalidOperationException($"{path} is merged; unmerge before loading an adapter into it");
        // A shape check also catches a layer that is feed-forward on one side only: (1, in) against (out, 1).
        AdapterTensors.Load(folder, model, name => IsIa3Parameter(name) ? [AdapterTensors.PeftKey(name)] : []);
    }

    static bool IsIa3Parameter(string name) => name.EndsWith(".ia3_l", StringComparison.Ordinal);

    static Dictionary<string, Ia3Linear> WrappedLayers(ITunableModel model) => AdapterTensors.WrappedLayers<Ia3Linear>(model, nameof(Ia3Method));
}
