using SharpTune.Models;

namespace SharpTune.Peft.Prefix;

/// <summary>The options of prefix tuning and P-tuning v2 (PEFT's <c>PrefixTuningConfig</c>), validated.</summary>
/// <param name="VirtualTokens">P.</param>
/// <param name="Projection">Embedding(P, H) → Linear(H, h) → tanh → Linear(h, L*2*H) (prefix tuning), or Embedding(P, L*2*H) alone (P-tuning v2).</param>
/// <param name="EncoderHidden">h, the projection's hidden size (prefix tuning; default 32, see <see cref="DefaultProjectionHidden"/>).</param>
/// <param name="ZeroInit">PEFT's <c>init_weights="zero"</c>: the prefix starts at zero (see <see cref="PrefixEncoder"/> for what that does).</param>
/// <param name="Dropout">Dropout on the prefix while training: THUDM's P-tuning v2 applies it, PEFT does not.</param>
public sealed record PrefixOptions(int VirtualTokens, bool Projection, int EncoderHidden, bool ZeroInit, double Dropout)
{
    /// <summary>
    /// The projection's hidden size when none is given. METHODS.md's typical 512 is sized for bert-base; on a small
    /// model the projection dominates (512 trains 10.2 % of minilm, whose whole prefix output is 92,160 values),
    /// while 32 keeps prefix tuning at 0.77 %. Give <c>--encoder-hidden 512</c> for PEFT's setting.
    /// </summary>
    public const int DefaultProjectionHidden = 32;

    /// <summary>Prefix tuning: with the projection, no dropout (as PEFT).</summary>
    public static PrefixOptions ForPrefixTuning(PeftSettings settings, IBackboneShape config)
    {
        PromptLearningMethod.CheckVirtualTokens(settings, config, inputSide: false);
        int hidden = settings.EncoderHidden ?? DefaultProjectionHidden;
        if (hidden < 1)
            throw new ArgumentException($"--encoder-hidden (EncoderHidden) must be at least 1, got {hidden}.");
        return new PrefixOptions(settings.VirtualTokens, true, hidden, settings.PrefixZeroInit, 0);
    }

    /// <summary>P-tuning v2: no projection, dropout on the prefix (THUDM).</summary>
    public static PrefixOptions ForPTuningV2(PeftSettings settings, IBackboneShape config)
    {
        PromptLearningMethod.CheckVirtualTokens(settings, config, inputSide: false);
        if (!(settings.PrefixDropout is >= 0 and < 1))
            throw new ArgumentException($"--prefix-dropout (PrefixDropout) must be in [0, 1), got {settings.PrefixDropout}.");
        return new PrefixOptions(settings.VirtualTokens, false, config.HiddenSize, settings.PrefixZeroInit, settings.PrefixDropout);
    }
}
