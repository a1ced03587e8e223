using SharpTune.Models;
using System.Text.Json.Nodes;
using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Peft.BitFit;

/// <summary>
/// BitFit (Ben Zaken et al. 2022): every bias of the encoder trains (query/key/value, the dense layers,
/// the LayerNorms, the pooler) with the head; the weights stay frozen. Nothing is wrapped.
/// PEFT has no BitFit, so the adapter folder is SharpTune's own in PEFT's shape: the same two files,
/// <c>peft_type</c> "BITFIT" (a SharpTune value that PEFT will refuse), the biases under their PEFT-style keys
/// <c>base_model.model.bert.encoder.layer.0.attention.self.query.bias</c> and the head under
/// <c>base_model.model.classifier.*</c>.
/// </summary>
public sealed class BitFitMethod : IPeftMethod
{
    /// <summary>SharpTune's own <c>peft_type</c> value in the adapter config; PEFT has no such type.</summary>
    public const string FileType = "BITFIT";

    public string Name => "bitfit";

    /// <summary>Null: PEFT has no BitFit (the folder's config says <see cref="FileType"/>).</summary>
    public string? PeftType => null;

    /// <summary>1e-3, the upper end of the BitFit paper's search (1e-4 .. 1e-3): biases are few and start pretrained.</summary>
    public double DefaultLearningRate => 1e-3;

    public bool TrainsBaseWeights => true;

    public void Validate(PeftSettings settings, IBackboneShape backbone) { }

    /// <summary>Every Linear layer's bias and, where norms have them, the norms' biases (two norms a layer and one more).</summary>
    public long TrainableParameters(PeftSettings settings, IBackboneShape backbone) =>
        backbone.LinearSites.Where(s => s.Bias).Sum(s => (long)s.OutFeatures)
        + (backbone.NormsHaveBias ? (long)backbone.HiddenSize * (2 * backbone.LayerCount + 1) : 0);

    public LinearFactory? Linears(PeftSettings settings, IBackboneShape backbone, LinearFactory plain) => null;

    public nn.Module? CreatePromptEncoder(PeftSettings settings, IBackboneShape backbone, Tensor wordEmbeddings) => null;

    public void Freeze(ITunableModel model, PeftSettings settings)
    {
        var names = model.Backbone.Names;
        if (!model.NamedParameters().Any(p => IsBackboneBias(names, p.Name)))
            throw new ArgumentException($"--method bitfit: this {model.Backbone.Family} model has no biases to train (Llama's layers have none; Qwen2's q/k/v and GPT-2's do)");
        AdapterTensors.TrainOnly(model, name => IsBackboneBias(names, name));
    }

    public void SaveAdapter(string folder, ITunableModel model, PeftSettings settings, string baseModelNameOrPath)
    {
        var names = model.Backbone.Names;
        var tensors = AdapterTensors.Collect(model, name => IsBackboneBias(names, name) ? AdapterTensors.PeftKey(name) : null);

        // The PEFT-wide fields, plus bias "all" in LoRA's sense to say what the tensors are.
        var config = new Dictionary<string, object?>
        {
            ["base_model_name_or_path"] = baseModelNameOrPath,
            ["bias"] = "all",
            ["inference_mode"] = true,
            ["modules_to_save"] = model.ModulesToSave.Count == 0 ? null : model.ModulesToSave,
            ["peft_type"] = FileType,
            ["revision"] = null,
            ["task_type"] = model.PeftTaskType,
        };
        AdapterFiles.Write(folder, config, tensors);
    }

    public PeftSettings ReadSettings(JsonObject adapterConfig, string source)
    {
        AdapterTensors.CheckPeftType(adapterConfig, source, FileType);
        return new PeftSettings();
    }

    public void LoadAdapter(string folder, ITunableModel model)
    {
        AdapterTensors.ReadConfig(folder, FileType);
        var names = model.Backbone.Names;
        AdapterTensors.Load(folder, model, name => IsBackboneBias(names, name) ? [AdapterTensors.PeftKey(name)] : []);
    }

    static bool IsBackboneBias(BackboneNames names, string name) =>
        names.IsBackbone(name) && name.EndsWith(".bias", StringComparison.Ordinal);
}
