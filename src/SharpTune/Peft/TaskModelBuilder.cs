using SharpTune.Models.Common;
using SharpTune.Heads;
using SharpTune.Checkpoints;
using SharpTune.Models;
using SharpTune.Models.Bert;
using SharpTune.Peft;

namespace SharpTune.Peft;

/// <summary>Builds a task model over pretrained weights, with a parameter-efficient method's modules when one is chosen.</summary>
public static class TaskModelBuilder
{
    /// <summary>
    /// A new <see cref="TaskModel"/> whose encoder holds a copy of <paramref name="pretrained"/>'s weights. A
    /// method that wraps Linear layers gets a freshly built encoder (adapters are decided at build time) into
    /// which the pretrained weights are copied; a prompt method adds its prompt module.
    /// </summary>
    /// <param name="bf16">Mixed precision: bf16 matrix products and attention over fp32 master weights.</param>
    public static TaskModel Build(PretrainedEncoder pretrained, HeadOptions head, IPeftMethod? method = null, PeftSettings? settings = null, bool bf16 = false)
    {
        settings ??= new PeftSettings();
        method?.Validate(settings, pretrained.Config);
        var linears = method?.Linears(settings, pretrained.Config);
        if (bf16 && linears is not null)
            throw new ArgumentException($"--precision bf16 is not available with --method {method!.Name} yet (it wraps the Linear layers itself); use fp32");
        if (bf16) linears = LinearFactories.Bf16;
        var encoder = new BertModel(pretrained.Config with { Bf16 = bf16 }, pretrained.Model.HasPooler, linears);
        var source = pretrained.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        var extra = new HashSet<string>(encoder.state_dict().Keys.Except(source.Keys));
        StateDictLoader.Load(encoder, source, pretrained.Source, optional: extra.Contains);
        var promptEncoder = method?.CreatePromptEncoder(settings, encoder);
        var model = new TaskModel(encoder, head with { UsePooler = head.UsePooler && encoder.HasPooler }, promptEncoder);
        method?.Freeze(model, settings);
        return model;
    }
}
