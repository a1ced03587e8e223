using SharpTune.Models;

namespace SharpTune.Peft.Lora;

/// <summary>
/// LoRA's options, read from <see cref="PeftSettings"/> and validated (follows PEFT's <c>LoraConfig</c>:
/// <c>r</c>, <c>lora_alpha</c>, <c>lora_dropout</c>, <c>target_modules</c>, <c>bias</c>, and the variants
/// <c>use_dora</c>, <c>use_rslora</c>, <c>init_lora_weights</c>).
/// </summary>
public sealed record LoraOptions(int R, double Alpha, double Dropout, IReadOnlyList<string> Targets, string Bias,
    bool UseDora = false, bool UseRsLora = false, string Init = LoraOptions.Kaiming)
{
    public static readonly IReadOnlyList<string> BiasModes = ["none", "all", "lora_only"];

    /// <summary>PEFT's default (<c>init_lora_weights=True</c>): A kaiming-uniform(a=sqrt 5), B zero.</summary>
    public const string Kaiming = "kaiming";

    /// <summary>The values <c>--lora-init</c> takes: PEFT's default, A normal(0, 1/r), PiSSA (top-r singular vectors), OLoRA (QR).</summary>
    public static readonly IReadOnlyList<string> Inits = [Kaiming, "gaussian", "pissa", "olora"];

    /// <summary>
    /// The factor on the low-rank update: <c>alpha / r</c>, or <c>alpha / sqrt(r)</c> with rsLoRA (Kalajdzievski 2023,
    /// PEFT's <c>use_rslora</c>), which keeps the update's size steady as the rank grows.
    /// </summary>
    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(R) : Alpha / R;

    /// <summary>PiSSA and OLoRA start the pair from the pretrained weight (and subtract that start from the base).</summary>
    public bool InitFromWeight => Init is "pissa" or "olora";

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
        if (!Inits.Contains(settings.LoraInit))
            throw new ArgumentException($"--lora-init must be one of {string.Join(", ", Inits)}, got '{settings.LoraInit}'", nameof(PeftSettings.LoraInit));
        var targets = settings.LoraTargets ?? backbone.Names.LoraTargets;
        LinearTargets.Validate(targets, backbone, "--lora-targets", nameof(PeftSettings.LoraTargets));
        var options = new LoraOptions(settings.LoraR, settings.LoraAlpha, settings.LoraDropout, targets.ToList(), settings.LoraBias,
            settings.LoraDora, settings.LoraRsLora, settings.LoraInit);
        if (options.InitFromWeight)
        {
            // The top r singular vectors (PiSSA) or the first r columns of Q (OLoRA) exist only up to the smaller side.
            var narrow = backbone.LinearSites.FirstOrDefault(s => LinearTargets.MatchesAny(backbone, s.Path, targets) && Math.Min(s.InFeatures, s.OutFeatures) < options.R);
            if (narrow is not null)
                throw new ArgumentException(
                    $"--lora-init {options.Init}: --lora-r {options.R} exceeds the rank of {narrow.Path} ({narrow.OutFeatures} x {narrow.InFeatures}); use r <= {Math.Min(narrow.InFeatures, narrow.OutFeatures)}",
                    nameof(PeftSettings.LoraR));
        }
        return options;
    }
}
