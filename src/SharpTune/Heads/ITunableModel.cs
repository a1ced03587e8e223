using SharpTune.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Heads;

/// <summary>
/// A pretrained network with what a task adds to it, as parameter-efficient methods see it: the backbone's shape and
/// names, every parameter by its Hugging Face name, which parameters are the task's head (they always train and are
/// saved with any adapter), and the method's prompt module. Implemented by <see cref="TaskModel"/> (an encoder with a
/// classification or tagging head) and <see cref="CausalLmModel"/> (a decoder trained as a language model).
/// </summary>
public interface ITunableModel
{
    /// <summary>The backbone's sizes, Linear layers and names.</summary>
    IBackboneShape Backbone { get; }

    /// <summary>The whole model as one module: its <c>named_parameters()</c> are the names methods and adapter files use.</summary>
    nn.Module Module { get; }

    /// <summary>Whether a parameter belongs to the task head (<c>classifier.*</c>, <c>crf.*</c>): it trains with every method.</summary>
    bool IsHead(string parameterName);

    /// <summary>PEFT's <c>task_type</c>: SEQ_CLS, TOKEN_CLS or CAUSAL_LM.</summary>
    string PeftTaskType { get; }

    /// <summary>PEFT's <c>modules_to_save</c> for Linear-wrapping methods: the head's module names (none for a language model).</summary>
    IReadOnlyList<string> ModulesToSave { get; }

    /// <summary>The method's prompt module (<c>prompt_encoder.*</c>), or null.</summary>
    nn.Module? PromptEncoder { get; }
}

/// <summary>Parameter listings every method uses.</summary>
public static class TunableModels
{
    public static IEnumerable<(string Name, Parameter Parameter)> NamedParameters(this ITunableModel model) =>
        model.Module.named_parameters().Select(p => (p.name, p.parameter));

    public static IEnumerable<(string Name, nn.Module Module)> NamedModules(this ITunableModel model) =>
        model.Module.named_modules().Select(m => (m.name, m.module));
}
