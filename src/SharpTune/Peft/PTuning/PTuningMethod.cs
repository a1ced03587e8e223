using SharpTune.Models;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SharpTune.Peft.PTuning;

/// <summary>
/// <c>--method ptuning</c>: P-tuning, PEFT's P_TUNING. PEFT saves only the encoder's output; SharpTune's
/// extra file keeps the MLP or LSTM so training can resume (<see cref="PromptLearningMethod"/>).
/// </summary>
public sealed class PTuningMethod : PromptLearningMethod
{
    /// <summary>The virtual tokens sit in front of the text and take input positions.</summary>
    protected override bool InputSide => true;

    public override string Name => "ptuning";
    public override string PeftType => "P_TUNING";
    public override double DefaultLearningRate => 1e-3;

    public override void Validate(PeftSettings settings, IBackboneShape backbone) => PTuningOptions.From(settings, backbone);

    /// <summary>
    /// The virtual tokens' embeddings and the prompt encoder: PEFT's MLP (H→E→E→H with biases), or its bidirectional LSTM
    /// of <see cref="PTuningOptions.EncoderLayers"/> layers and the MLP (2E→2E→H) over it.
    /// </summary>
    public override long TrainableParameters(PeftSettings settings, IBackboneShape backbone)
    {
        var options = PTuningOptions.From(settings, backbone);
        long h = backbone.HiddenSize, e = options.EncoderHidden, tokens = options.VirtualTokens * h;
        if (options.EncoderType != PromptEncoderType.Lstm) return tokens + (h * e + e) + (e * e + e) + (e * h + h);
        long lstm = 0;
        for (int layer = 0; layer < PTuningOptions.EncoderLayers; layer++)
            lstm += 2 * (4 * e * (layer == 0 ? h : 2 * e) + 4 * e * e + 8 * e);   // two directions: input and hidden weights, two biases
        return tokens + lstm + (2 * e * 2 * e + 2 * e) + (2 * e * h + h);
    }

    public override nn.Module CreatePromptEncoder(PeftSettings settings, IBackboneShape backbone, Tensor wordEmbeddings) =>
        new PromptEncoder(PTuningOptions.From(settings, backbone), backbone);

    protected override bool IsOwnModule(PromptModule module) => module is PromptEncoder;

    protected override void AddConfigFields(IDictionary<string, object?> config, PeftSettings settings, IBackboneShape backbone, string baseModelNameOrPath)
    {
        var options = PTuningOptions.From(settings, backbone);
        config["encoder_dropout"] = PTuningOptions.EncoderDropout;
        config["encoder_hidden_size"] = options.EncoderHidden;
        config["encoder_num_layers"] = PTuningOptions.EncoderLayers;
        config["encoder_reparameterization_type"] = PTuningOptions.PeftName(options.EncoderType);
    }

    protected override PeftSettings ReadConfigFields(JsonObject config, PeftSettings settings, string source)
    {
        string type = ConfigString(config, "encoder_reparameterization_type", source) ?? "MLP";
        if (type is not ("MLP" or "LSTM"))
            throw new InvalidDataException($"{source}: encoder_reparameterization_type '{type}' is not MLP or LSTM");
        if (type == "LSTM")
        {
            // SharpTune builds PEFT's default LSTM; another depth or dropout would not load into it.
            if (config["encoder_num_layers"] is not null && ConfigInt(config, "encoder_num_layers", source) != PTuningOptions.EncoderLayers)
                throw new InvalidDataException($"{source}: encoder_num_layers {config["encoder_num_layers"]} is not supported, only {PTuningOptions.EncoderLayers}");
            if (config["encoder_dropout"] is JsonValue dropout && dropout.TryGetValue(out double p) && p != PTuningOptions.EncoderDropout)
                throw new InvalidDataException($"{source}: encoder_dropout {p} is not supported, only {PTuningOptions.EncoderDropout}");
        }
        int? hidden = config["encoder_hidden_size"] is null ? null : ConfigInt(config, "encoder_hidden_size", source);
        return settings with { EncoderType = type.ToLowerInvariant(), EncoderHidden = hidden };
    }
}
