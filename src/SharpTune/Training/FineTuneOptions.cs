using System.Text.Json.Serialization;
using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Peft;

namespace SharpTune.Training;

/// <summary>
/// A whole fine-tuning run: model, data, task, what trains, and how, as typed values. <see cref="OptionResolver"/>
/// builds it from the command line, a config file and the defaults (<see cref="OptionCatalog"/> names every
/// option); the run folder keeps the values used and their sources as <c>run_config.json</c>.
/// </summary>
public sealed record FineTuneOptions
{
    [JsonPropertyName("model")] public string Model { get; init; } = "minilm";
    /// <summary>A task of <see cref="Tasks.TaskRegistry"/>: classify, regress, tokens, causal-lm.</summary>
    [JsonPropertyName("task")] public string Task { get; init; } = "classify";
    /// <summary>causal-lm: prompt tokens count in the loss too.</summary>
    [JsonPropertyName("train_on_prompt")] public bool TrainOnPrompt { get; init; }
    /// <summary>causal-lm: several examples per row, attention confined to each.</summary>
    [JsonPropertyName("packing")] public bool Packing { get; init; }
    /// <summary>causal-lm: the dtype the frozen base is held in (fp32, or bf16 with adapters and heads training in fp32).</summary>
    [JsonPropertyName("base_dtype")] public string BaseDtype { get; init; } = "auto";

    /// <summary>What <c>--base-dtype</c> takes: auto, stored, fp32, bf16, and the block types a folder is quantized to on load.</summary>
    public static IReadOnlyList<string> BaseDtypes { get; } = ["auto", "stored", "fp32", "bf16", .. Models.Decoders.WeightStorage.QuantizeTypes.Keys];
    /// <summary>causal-lm: recompute each layer in the backward pass instead of keeping its activations.</summary>
    [JsonPropertyName("gradient_checkpointing")] public bool GradientCheckpointing { get; init; }
    /// <summary>causal-lm: validation prompts generated and scored at each evaluation (0: none).</summary>
    [JsonPropertyName("eval_generate")] public int EvalGenerate { get; init; }
    /// <summary>causal-lm: a Jinja chat template file overriding the model's.</summary>
    [JsonPropertyName("chat_template")] public string? ChatTemplate { get; init; }
    [JsonPropertyName("multi_label")] public bool MultiLabel { get; init; }
    [JsonPropertyName("crf")] public bool Crf { get; init; }
    /// <summary>Sequence tasks: how token states become one vector; null follows the model (<see cref="PretrainedEncoder.Pooling"/>).</summary>
    [JsonPropertyName("pooling")] public Pooling? Pooling { get; init; }
    [JsonPropertyName("train")] public string? Train { get; init; }
    [JsonPropertyName("validation")] public string? Validation { get; init; }
    /// <summary>Held out of the training data when no validation file is given.</summary>
    [JsonPropertyName("validation_fraction")] public double ValidationFraction { get; init; } = 0.1;
    [JsonPropertyName("format")] public DataFormat Format { get; init; } = DataFormat.Auto;
    [JsonPropertyName("text_column")] public string TextColumn { get; init; } = "text";
    [JsonPropertyName("text_pair_column")] public string? TextPairColumn { get; init; }
    [JsonPropertyName("label_column")] public string LabelColumn { get; init; } = "label";
    [JsonPropertyName("label_separator")] public string LabelSeparator { get; init; } = "|";
    [JsonPropertyName("skip_bad_rows")] public bool SkipBadRows { get; init; }
    [JsonPropertyName("max_length")] public int MaxLength { get; init; } = 128;
    /// <summary>fp32, or bf16 mixed precision (bf16 matrix products and attention, fp32 master weights, LayerNorm and loss).</summary>
    [JsonPropertyName("precision")] public string Precision { get; init; } = "fp32";
    /// <summary>full, head, embeddings, freeze:K, or a parameter-efficient method (lora, prefix, ...).</summary>
    [JsonPropertyName("method")] public string Method { get; init; } = "full";
    [JsonPropertyName("class_weights")] public IReadOnlyList<float>? ClassWeights { get; init; }
    [JsonPropertyName("label_smoothing")] public double LabelSmoothing { get; init; }
    [JsonPropertyName("out")] public string Out { get; init; } = "runs/latest";
    [JsonPropertyName("resume")] public bool Resume { get; init; }
    /// <summary>libtorch threads per process; null: libtorch's default alone, the machine's cores shared among the ranks on it under MPI.</summary>
    [JsonPropertyName("threads")] public int? Threads { get; init; }
    [JsonPropertyName("training")] public TrainingOptions Training { get; init; } = new();
    [JsonPropertyName("peft")] public PeftSettings Peft { get; init; } = new();
    /// <summary>preference: the objective (DPO, ORPO) and its settings.</summary>
    [JsonPropertyName("preference")] public Tasks.PreferenceOptions Preference { get; init; } = new();

    /// <summary>Where each option's value came from, by option name (see <see cref="OptionResolver"/>); written to run_config.json.</summary>
    [JsonIgnore] public IReadOnlyDictionary<string, string> Sources { get; init; } = new Dictionary<string, string>();

    public FineTuneOptions Validate()
    {
        TrainingMethods.Parse(Method);
        Tasks.TaskRegistry.CheckOptions(this);   // the task is known, and no option of another task is given
        if (!BaseDtypes.Contains(BaseDtype))
            throw new ArgumentException($"--base-dtype '{BaseDtype}' is not known: use {string.Join(", ", BaseDtypes)}");
        if (EvalGenerate < 0) throw new ArgumentException($"--eval-generate must be 0 or more, got {EvalGenerate}");
        if (string.IsNullOrWhiteSpace(Train)) throw new ArgumentException("--train FILE is required");
        if (MaxLength < 4 || MaxLength > 8192) throw new ArgumentException($"--max-length must be between 4 and 8192, got {MaxLength}");
        if (ValidationFraction is <= 0 or >= 1) throw new ArgumentException($"--validation-fraction must be in (0, 1), got {ValidationFraction}");
        if (Precision is not ("fp32" or "bf16")) throw new ArgumentException($"--precision '{Precision}' is not known: use fp32 or bf16");
        if (LabelSmoothing is < 0 or >= 1) throw new ArgumentException($"--label-smoothing must be in [0, 1), got {LabelSmoothing}");
        if (Threads is < 1) throw new ArgumentException($"--threads must be at least 1, got {Threads}");
        Training.Validate();
        Preference.Validate();
        return this;
    }
}
