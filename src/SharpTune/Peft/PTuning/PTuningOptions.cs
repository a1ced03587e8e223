using SharpTune.Models;

namespace SharpTune.Peft.PTuning;

/// <summary>P-tuning's prompt encoder (PEFT's <c>PromptEncoderReparameterizationType</c>).</summary>
public enum PromptEncoderType
{
    /// <summary>Linear(H, h) ReLU Linear(h, h) ReLU Linear(h, H).</summary>
    Mlp,
    /// <summary>Bidirectional LSTM (2 layers, hidden h), then Linear(2h, 2h) ReLU Linear(2h, H).</summary>
    Lstm,
}

/// <summary>P-tuning's options, read and validated from <see cref="PeftSettings"/>.</summary>
/// <param name="VirtualTokens">P.</param>
/// <param name="EncoderType">MLP or LSTM.</param>
/// <param name="EncoderHidden">h, the encoder's hidden size (default 128, METHODS.md's typical setting; PEFT defaults to H).</param>
public sealed record PTuningOptions(int VirtualTokens, PromptEncoderType EncoderType, int EncoderHidden)
{
    /// <summary>
    /// 128, the typical P-tuning setting (METHODS.md). PEFT's default h = H makes the MLP 1.95 % of minilm; at 128
    /// it is 0.54 %. Give <c>--encoder-hidden</c> for another size.
    /// </summary>
    public const int DefaultEncoderHidden = 128;

    /// <summary>PEFT's <c>encoder_num_layers</c> default: the LSTM's layers (the MLP always has three Linears).</summary>
    public const int EncoderLayers = 2;

    /// <summary>PEFT's <c>encoder_dropout</c> default: dropout between the LSTM's layers.</summary>
    public const double EncoderDropout = 0.0;

    public static PTuningOptions From(PeftSettings settings, IBackboneShape config)
    {
        PromptLearningMethod.CheckVirtualTokens(settings, config, inputSide: true);
        var type = ParseType(settings.EncoderType);
        int hidden = settings.EncoderHidden ?? DefaultEncoderHidden;
        if (hidden < 1)
            throw new ArgumentException($"--encoder-hidden (EncoderHidden) must be at least 1, got {hidden}.");
        return new PTuningOptions(settings.VirtualTokens, type, hidden);
    }

    /// <summary>mlp or lstm, in any case.</summary>
    public static PromptEncoderType ParseType(string text) => text.Trim().ToLowerInvariant() switch
    {
        "mlp" => PromptEncoderType.Mlp,
        "lstm" => PromptEncoderType.Lstm,
        _ => throw new ArgumentException($"--encoder-type (EncoderType) '{text}' is not known: use mlp or lstm."),
    };

    /// <summary>PEFT's name: MLP or LSTM.</summary>
    public static string PeftName(PromptEncoderType type) => type == PromptEncoderType.Lstm ? "LSTM" : "MLP";
}
