using SharpTune.Models;

namespace SharpTune.Peft.Lora;

/// <summary>
/// LoRA's options, read from <see cref="PeftSettings"/> and validated (follows PEFT's <c>LoraConfig</c>:
/// <c>r</c>, <c>lora_alpha</c>, <c>lora_dropout</c>, <c>target_modules</c>, <c>bias</c>).
/// </summary>
public sealed record LoraOptions(int R, double Alpha, double Dropout, IReadOnlyList<string> Targets, string Bias)
{
    public static readonly IReadOnlyList<string> BiasModes = ["none", "all", "lora_only"];

    /// <summary>The factor on the low-rank update, <c>alpha / r</c> (PEFT without rsLoRA).</summary>
    public double Scaling => Alpha / R;

    /// <summary>Reads and validates; errors are <see cref="ArgumentException"/> naming the option.</summary>
    public static LoraOptions From(PeftSettings settings, IBackboneShape backbone)
    {
        if (settings.LoraR <= 0)
            throw new ArgumentException($"--lora-r must be a positive rank, got {settings.LoraR}", nameof(PeftSettings.LoraR));
        if (!(settings.LoraAlpha > 0) || !double.IsFinite(settings.LoraAlpha))
            throw new ArgumentException($"--lora-alpha must be positive, got {settings.LoraAlpha}", nameof(PeftSettings.LoraAlpha));
        if (!(settings.LoraDropout >= 0 && settings.LoraDropout < 1))
            throw new ArgumentException($"--lora-dropout must be in [0, 1), got {settings.LoraDropout}", nameof(PeftSettings.LoraDropout));
        if (!BiasModes.Contains(settings.LoraBias))
            throw new ArgumentException($"--lora-bias must be none, all or lora_only, got '{settings.LoraBias}'", nameof(PeftSettings.LoraBias));
        var targets = settings.LoraTargets ?? backbone.Names.LoraTargets;
        LinearTargets.Validate(targets, backbone, "--lora-targets", nameof(PeftSettings.LoraTargets));
        return new LoraOptions(settings.LoraR, settings.LoraAlpha, settings.LoraDropout, targets.ToList(), settings.LoraBias);
    }
}
