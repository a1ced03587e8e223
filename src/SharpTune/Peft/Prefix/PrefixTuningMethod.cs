using SharpTune.Models;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SharpTune.Peft.Prefix;

/// <summary>The two PREFIX_TUNING methods: same module and config, told apart by <c>prefix_projection</c>.</summary>
public abstract class PrefixMethodBase : PromptLearningMethod
{
    /// <summary>PEFT's <c>prefix_projection</c>.</summary>
    protected abstract bool Projection { get; }

    /// <summary>Key/value prefixes, not input embeddings.</summary>
    protected override bool InputSide => false;

    protected abstract PrefixOptions Options(PeftSettings settings, IBackboneShape config);

    public override string PeftType => "PREFIX_TUNING";
    public override double DefaultLearningRate => 1e-2;

    public override void Validate(PeftSettings settings, IBackboneShape backbone) => Options(settings, backbone);

    /// <summary>
    /// A key and a value per virtual token and layer (P-tuning v2's table), or, with the projection, the token embeddings
    /// and the two-layer MLP that makes them (prefix tuning's).
    /// </summary>
    public override long TrainableParameters(PeftSettings settings, IBackboneShape backbone)
    {
        var options = Options(settings, backbone);
        long width = (long)backbone.KeyValueHeadCount * backbone.HeadSize, output = 2 * backbone.LayerCount * width, e = options.EncoderHidden;
        return options.Projection
            ? options.VirtualTokens * width + (width * e + e) + (e * output + output)
            : options.VirtualTokens * output;
    }

    public override nn.Module CreatePromptEncoder(PeftSettings settings, IBackboneShape backbone, Tensor wordEmbeddings) =>
        new PrefixEncoder(Options(settings, backbone), backbone);

    /// <summary>PEFT sizes a prefix over grouped-query attention by the key/value heads (peft#1901).</summary>
    protected override (int TokenDim, int Heads) PeftDimensions(IBackboneShape backbone) =>
        (backbone.KeyValueHeadCount * backbone.HeadSize, backbone.KeyValueHeadCount);

    protected override bool IsOwnModule(PromptModule module) => module is PrefixEncoder prefix && prefix.Projection == Projection;

    public override bool Reads(JsonObject adapterConfig) =>
        base.Reads(adapterConfig)
        && (adapterConfig["prefix_projection"] is JsonValue value && value.TryGetValue(out bool projection) ? projection : false) == Projection;

    protected override void AddConfigFields(IDictionary<string, object?> config, PeftSettings settings, IBackboneShape backbone, string baseModelNameOrPath)
    {
        var options = Options(settings, backbone);
        config["encoder_hidden_size"] = options.EncoderHidden; // PEFT fills in token_dim when none is given
        config["init_weights"] = options.ZeroInit ? "zero" : null;
        config["prefix_projection"] = Projection;
    }

    protected override PeftSettings ReadConfigFields(JsonObject config, PeftSettings settings, string source)
    {
        string? init = ConfigString(config, "init_weights", source);
        if (init is not (null or "zero"))
            throw new InvalidDataException($"{source}: init_weights '{init}' is not \"zero\" or null");
        settings = settings with { PrefixZeroInit = init == "zero" };
        if (Projection && config["encoder_hidden_size"] is not null)
            settings = settings with { EncoderHidden = ConfigInt(config, "encoder_hidden_size", source) };
        return settings;
    }
}

/// <summary>
/// <c>--method prefix</c>: prefix tuning with PEFT's projection (<c>prefix_projection=true</c>), hidden 512 by
/// default. PEFT saves only the projected prefix; SharpTune's extra file keeps the projection for resuming.
/// </summary>
public sealed class PrefixTuningMethod : PrefixMethodBase
{
    public override string Name => "prefix";
    protected override bool Projection => true;
    protected override PrefixOptions Options(PeftSettings settings, IBackboneShape config) => PrefixOptions.ForPrefixTuning(settings, config);
}

/// <summary>
/// <c>--method ptuning-v2</c>: P-tuning v2, a prefix table with no projection (<c>prefix_projection=false</c>)
/// and THUDM's dropout on it. <see cref="PeftSettings.PrefixDropout"/> is not a PEFT config field, so it is
/// not in the adapter: <see cref="PromptLearningMethod.ReadSettings"/> gives the default back.
/// </summary>
public sealed class PTuningV2Method : PrefixMethodBase
{
    public override string Name => "ptuning-v2";
    protected override bool Projection => false;
    protected override PrefixOptions Options(PeftSettings settings, IBackboneShape config) => PrefixOptions.ForPTuningV2(settings, config);
}
