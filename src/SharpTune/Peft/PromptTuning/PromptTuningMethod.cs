using SharpTune.Models;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SharpTune.Peft.PromptTuning;

/// <summary>
/// <c>--method prompt</c>: prompt tuning, PEFT's PROMPT_TUNING. Only P vectors (and the head) train, so
/// it needs a high learning rate (METHODS.md: 3e-2 .. 3e-1) and many epochs.
/// </summary>
public sealed class PromptTuningMethod : PromptLearningMethod
{
    /// <summary>The virtual tokens sit in front of the text and take input positions.</summary>
    protected override bool InputSide => true;

    public override string Name => "prompt";
    public override string PeftType => "PROMPT_TUNING";
    public override double DefaultLearningRate => 3e-2;

    public override void Validate(PeftSettings settings, IBackboneShape backbone) => PromptTuningOptions.From(settings, backbone);

    /// <summary>One embedding per virtual token.</summary>
    public override long TrainableParameters(PeftSettings settings, IBackboneShape backbone) => (long)settings.VirtualTokens * backbone.HiddenSize;

    public override nn.Module CreatePromptEncoder(PeftSettings settings, IBackboneShape backbone, Tensor wordEmbeddings) =>
        new PromptEmbedding(PromptTuningOptions.From(settings, backbone), backbone, wordEmbeddings);

    protected override bool IsOwnModule(PromptModule module) => module is PromptEmbedding;

    protected override void AddConfigFields(IDictionary<string, object?> config, PeftSettings settings, IBackboneShape backbone, string baseModelNameOrPath)
    {
        var options = PromptTuningOptions.From(settings, backbone);
        bool text = options.Init == PromptInit.Text;
        config["prompt_tuning_init"] = PromptTuningOptions.PeftName(options.Init);
        config["prompt_tuning_init_text"] = text ? options.InitText : null;
        // PEFT requires a tokenizer for TEXT; the base model's is the one that tokenised the text.
        config["tokenizer_name_or_path"] = text ? baseModelNameOrPath : null;
        config["tokenizer_kwargs"] = null;
    }

    protected override PeftSettings ReadConfigFields(JsonObject config, PeftSettings settings, string source)
    {
        string init = ConfigString(config, "prompt_tuning_init", source) ?? "RANDOM";
        PromptInit parsed;
        try
        {
            parsed = PromptTuningOptions.ParseInit(init);
        }
        catch (ArgumentException)
        {
            throw new InvalidDataException($"{source}: prompt_tuning_init '{init}' is not RANDOM, SAMPLE_VOCAB or TEXT");
        }
        return settings with
        {
            PromptInit = PromptTuningOptions.SettingName(parsed),
            PromptInitText = ConfigString(config, "prompt_tuning_init_text", source),
        };
    }
}
