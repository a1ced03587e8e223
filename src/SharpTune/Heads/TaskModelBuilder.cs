using SharpTune.Checkpoints;
using SharpTune.Models;
using SharpTune.Models.Bert;
using SharpTune.Peft;

namespace SharpTune.Heads;

/// <summary>Builds a task model over pretrained weights, with a parameter-efficient method's modules when one is chosen.</summary>
public static class TaskModelBuilder
{
    /// <summary>
    /// A new <see cref="TaskModel"/> whose encoder holds a copy of <paramref name="pretrained"/>'s weights. A
    /// method that wraps Linear layers gets a freshly built encoder (adapters are decided at build time) into
    /// which the pretrained weights are copied; a prompt method adds its prompt module.
    /// </summary>
    public static TaskModel Build(PretrainedEncoder pretrained, HeadOptions head, IPeftMethod? method = null, PeftSettings? settings = null)
    {
        settings ??= new PeftSettings();
        method?.Validate(settings, pretrained.Config);
        var linears = method?.Linears(settings, pretrained.Config);
        var encoder = new BertModel(pretrained.Config, pretrained.Model.HasPooler, linears);
        var source = pretrained.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        var extra = new HashSet<string>(encoder.state_dict().Keys.Except(source.Keys));
        StateDictLoader.Load(encoder, source, pretrained.Source, optional: extra.Contains);
        var promptEncoder = method?.CreatePromptEncoder(settings, encoder);
        var model = new TaskModel(encoder, head with { UsePooler = head.UsePooler && encoder.HasPooler }, promptEncoder);
        method?.Freeze(model, settings);
        return model;
    }
}
