using SharpTune.Models.Common;
using SharpTune.Models.Decoders;
using SharpTune.Models;
using SharpTune.Heads;
using SharpTune.Models.Bert;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// Every option of every parameter-efficient method, as a user gives them (command line or config file).
/// Each method reads the ones it needs into its own validated options record; defaults follow METHODS.md.
/// </summary>
public sealed record PeftSettings
{
    /// <summary>Prompt methods: number of virtual tokens P.</summary>
    public int VirtualTokens { get; init; } = 20;
    /// <summary>P-tuning: prompt encoder hidden size h (null: hidden size of the model). Prefix tuning: projection hidden size (null: 512).</summary>
    public int? EncoderHidden { get; init; }
    /// <summary>P-tuning: MLP or LSTM.</summary>
    public string EncoderType { get; init; } = "mlp";
    /// <summary>Prompt tuning initialisation: random, sample_vocab or text.</summary>
    public string PromptInit { get; init; } = "random";
    public string? PromptInitText { get; init; }
    /// <summary>
    /// Prompt tuning with text initialisation: the token ids of <see cref="PromptInitText"/>, as PEFT takes them
    /// (<c>tokenizer(text)["input_ids"]</c>, [CLS] and [SEP] included). The caller holds the tokenizer: set it
    /// with <c>settings.WithPromptInitTokens(tokenizer)</c>, which leaves other settings alone.
    /// </summary>
    public IReadOnlyList<int>? PromptInitTokenIds { get; init; }
    /// <summary>P-tuning v2: dropout on the prefix (THUDM applies the hidden dropout; PEFT none).</summary>
    public double PrefixDropout { get; init; } = 0.1;
    /// <summary>Prefix tuning: zero-initialised prefix (an untrained prefix then only dilutes attention; see PrefixEncoder).</summary>
    public bool PrefixZeroInit { get; init; }
    public int LoraR { get; init; } = 8;
    public double LoraAlpha { get; init; } = 16;
    public double LoraDropout { get; init; } = 0.1;
    /// <summary>LoRA's <c>target_modules</c>; null: the model family's default (PEFT's table: query, value for BERT; q_proj, v_proj for Llama and Qwen2; c_attn for GPT-2).</summary>
    public IReadOnlyList<string>? LoraTargets { get; init; }
    /// <summary>none, all or lora_only.</summary>
    public string LoraBias { get; init; } = "none";
    /// <summary>IA3's <c>target_modules</c>; null: the family's default (key, value, output.dense for BERT; k_proj, v_proj, down_proj for Llama and Qwen2).</summary>
    public IReadOnlyList<string>? Ia3Targets { get; init; }
    /// <summary>IA3's <c>feedforward_modules</c>; null: the family's default (output.dense for BERT; down_proj for Llama and Qwen2).</summary>
    public IReadOnlyList<string>? Ia3FeedForward { get; init; }
}

/// <summary>
/// A parameter-efficient fine-tuning method. It decides, when the model is built, which Linear layers it
/// wraps and which prompt module it adds; after building, which parameters train. One implementation
/// per folder under <c>Peft/</c>, registered in <see cref="PeftRegistry"/>.
/// </summary>
public interface IPeftMethod
{
    /// <summary>The name users type: <c>--method lora</c>.</summary>
    string Name { get; }

    /// <summary>PEFT's <c>peft_type</c> (LORA, PREFIX_TUNING, ...), or null when PEFT has no such adapter (BitFit).</summary>
    string? PeftType { get; }

    /// <summary>A starting learning rate when the user gives none (METHODS.md).</summary>
    double DefaultLearningRate { get; }

    /// <summary>
    /// Input positions the method's virtual tokens take in front of the text: prompt tuning's and P-tuning's always; a
    /// key/value prefix's where <paramref name="backbone"/>'s real tokens follow it (<see cref="IBackboneShape.PrefixTakesPositions"/>); 0 for the others.
    /// </summary>
    int PositionsTaken(PeftSettings settings, IBackboneShape backbone) => 0;

    /// <summary>Whether the method puts virtual tokens (a prompt or a prefix) in front of each example: they belong to one example per row, so no packing.</summary>
    bool AddsVirtualTokens => false;

    /// <summary>Whether the method trains weights of the pretrained model itself (BitFit's biases), so the base must be held dense and trainable.</summary>
    bool TrainsBaseWeights => false;

    /// <summary>Validates the settings this method reads against the backbone; throws ArgumentException naming the option.</summary>
    void Validate(PeftSettings settings, IBackboneShape backbone);

    /// <summary>
    /// Parameters the method trains on a backbone of this shape, counted from the shape alone (what ParameterSummary
    /// reports once the model is built): the memory and disk a run needs are estimated from it before a weight is read.
    /// </summary>
    long TrainableParameters(PeftSettings settings, IBackboneShape backbone);

    /// <summary>
    /// The factory for the backbone's Linear layers, or null to keep plain ones. <paramref name="plain"/> builds the
    /// layers the method leaves alone (the family's own: nn.Linear, GPT-2's transposed layout, bf16 layers).
    /// </summary>
    LinearFactory? Linears(PeftSettings settings, IBackboneShape backbone, LinearFactory plain);

    /// <summary>
    /// The prompt module (implements <see cref="IEncoderInputAdapter"/> and <see cref="IDecoderInputAdapter"/>), or
    /// null. Called after the pretrained weights are loaded; <paramref name="wordEmbeddings"/> (V, H) is the backbone's
    /// token embedding matrix (prompt tuning starts from its rows).
    /// </summary>
    nn.Module? CreatePromptEncoder(PeftSettings settings, IBackboneShape backbone, Tensor wordEmbeddings);

    /// <summary>Sets requires_grad: the backbone frozen, the method's own parameters and the head trainable.</summary>
    void Freeze(ITunableModel model, PeftSettings settings);

    /// <summary>
    /// Writes the adapter in PEFT's format into <paramref name="folder"/> through <see cref="AdapterFiles"/>:
    /// <c>adapter_config.json</c> and <c>adapter_model.safetensors</c> with PEFT's key names, the head under
    /// <c>modules_to_save</c>. Methods PEFT lacks (BitFit) write the same two files in the same spirit.
    /// </summary>
    void SaveAdapter(string folder, ITunableModel model, PeftSettings settings, string baseModelNameOrPath);

    /// <summary>Reads the settings back from a parsed <c>adapter_config.json</c>, so the model can be rebuilt.</summary>
    PeftSettings ReadSettings(System.Text.Json.Nodes.JsonObject adapterConfig, string source);

    /// <summary>Loads an adapter folder into a model built with the same settings; errors name the file and key.</summary>
    void LoadAdapter(string folder, ITunableModel model);

    /// <summary>
    /// Whether a parsed <c>adapter_config.json</c> was written by this method. By <c>peft_type</c>; methods that
    /// share one (prefix tuning and P-tuning v2 are both PREFIX_TUNING) look at more fields.
    /// </summary>
    bool Reads(System.Text.Json.Nodes.JsonObject adapterConfig) =>
        PeftType is not null && adapterConfig["peft_type"]?.GetValue<string>() == PeftType;
}

/// <summary>Calls that keep BERT code short.</summary>
public static class PeftMethods
{
    /// <summary>The method's factory over BERT's own Linear layers.</summary>
    public static LinearFactory? Linears(this IPeftMethod method, PeftSettings settings, BertConfig config) =>
        method.Linears(settings, config, LinearFactories.Plain);

    /// <summary>The method's prompt module for a BERT encoder.</summary>
    public static nn.Module? CreatePromptEncoder(this IPeftMethod method, PeftSettings settings, BertModel encoder) =>
        method.CreatePromptEncoder(settings, encoder.Config, encoder.Embeddings.WordEmbeddings.weight!);
}
