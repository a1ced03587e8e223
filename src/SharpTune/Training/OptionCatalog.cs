using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Peft;

namespace SharpTune.Training;

/// <summary>
/// Every option of <c>sharptune train</c>, in one table: the command line's flags, a config file's keys and
/// run_config.json's entries all come from here, so a name that works in one works in all three.
/// </summary>
public static class OptionCatalog
{
    public static IReadOnlyList<OptionSpec> All { get; } = Build();

    static readonly Dictionary<string, OptionSpec> ByKey = All
        .SelectMany(spec => spec.Keys.Select(key => (key, spec)))
        .ToDictionary(x => x.key, x => x.spec, StringComparer.Ordinal);

    /// <summary>The option a config key names (snake_case or as typed on the command line, with or without dashes), or null.</summary>
    public static OptionSpec? Find(string key) => ByKey.GetValueOrDefault(OptionSpec.NormaliseKey(key.TrimStart('-')));

    /// <summary>Every key a config file may use, for "did you mean" messages.</summary>
    public static IEnumerable<string> Keys => ByKey.Keys;

    public static OptionSpec Get(string name) => All.Single(s => s.Name == name);

    static IReadOnlyList<OptionSpec> Build()
    {
        var specs = new List<OptionSpec>();
        void Add(string name, OptionValueKind kind, string help, Func<FineTuneOptions, object?> get,
            Func<FineTuneOptions, JsonNode?, string, FineTuneOptions> set, string[]? keys = null, string[]? flags = null) =>
            specs.Add(new OptionSpec { Name = name, Kind = kind, Help = help, Get = get, Set = set, KeyAliases = keys ?? [], FlagAliases = flags ?? [] });

        // Model, task, head.
        Add("model", OptionValueKind.Text, "Built-in model (minilm, arctic-xs), Hugging Face folder, ONNX file, or (--task causal-lm) a decoder's folder or .gguf file (default minilm)",
            o => o.Model, (o, v, w) => o with { Model = OptionSpec.Text(v, w) }, ["model_name_or_path", "base_model"]);
        Add("task", OptionValueKind.Text, string.Join("; ", Tasks.TaskRegistry.All.Select(t => $"{t.Name}: {t.Summary}")) + " (default classify)",
            o => o.Task, (o, v, w) => o with { Task = OptionSpec.Choice(v, w, Tasks.TaskRegistry.Names) });
        Add("train-on-prompt", OptionValueKind.Flag, "causal-lm: prompt tokens count in the loss too (default: the completion or assistant turns only)",
            o => o.TrainOnPrompt, (o, v, w) => o with { TrainOnPrompt = OptionSpec.Switch(v, w) }, ["train_on_inputs"]);
        Add("packing", OptionValueKind.Flag, "causal-lm: several examples per row of --max-length, attention kept inside each",
            o => o.Packing, (o, v, w) => o with { Packing = OptionSpec.Switch(v, w) });
        Add("base-dtype", OptionValueKind.Text, "causal-lm: hold the frozen base as stored (a GGUF's blocks, quantized or not, memory-mapped), fp32, bf16 (half the memory), "
            + "or a Hugging Face folder's matrices quantized on load (q8_0, q4_0, ...; adapter and prompt methods); "
            + "default auto: stored for a GGUF base under an adapter or prompt method, else fp32 (adapters always train in fp32)",
            o => o.BaseDtype, (o, v, w) => o with { BaseDtype = OptionSpec.Choice(v, w, FineTuneOptions.BaseDtypes) });
        Add("gradient-checkpointing", OptionValueKind.Flag, "causal-lm: recompute each layer in the backward pass instead of keeping its activations (less memory, about a third more compute)",
            o => o.GradientCheckpointing, (o, v, w) => o with { GradientCheckpointing = OptionSpec.Switch(v, w) });
        Add("eval-generate", OptionValueKind.Integer, "causal-lm: at each evaluation, complete N validation prompts greedily, score them (exact match, ROUGE-L) and write samples.jsonl",
            o => o.EvalGenerate, (o, v, w) => o with { EvalGenerate = OptionSpec.Integer(v, w) });
        Add("chat-template", OptionValueKind.Text, "causal-lm: a Jinja chat template file for messages rows (default: the model's)",
            o => o.ChatTemplate, (o, v, w) => o with { ChatTemplate = OptionSpec.Text(v, w) });
        Add("objective", OptionValueKind.Text, "preference: dpo (against a reference model: the base under the adapter) or orpo (odds ratio over the SFT loss, no reference) (default dpo)",
            o => o.Preference.Objective, (o, v, w) => o with { Preference = o.Preference with { Objective = OptionSpec.Choice(v, w, Tasks.PreferenceOptions.Objectives) } });
        Add("preference-loss", OptionValueKind.Text, "preference, DPO: sigmoid (the paper's) or ipo (default sigmoid)",
            o => o.Preference.Loss, (o, v, w) => o with { Preference = o.Preference with { Loss = OptionSpec.Choice(v, w, Tasks.PreferenceOptions.Losses) } }, ["loss_type"]);
        Add("beta", OptionValueKind.Number, "preference, DPO: beta, how far the model may move from the reference (default 0.1)",
            o => o.Preference.Beta, (o, v, w) => o with { Preference = o.Preference with { Beta = OptionSpec.Number(v, w) } });
        Add("orpo-lambda", OptionValueKind.Number, "preference, ORPO: weight of the odds-ratio term (TRL's beta; default 0.1)",
            o => o.Preference.OrpoLambda, (o, v, w) => o with { Preference = o.Preference with { OrpoLambda = OptionSpec.Number(v, w) } });
        Add("precompute-reference", OptionValueKind.Flag, "preference, DPO: compute the reference log-probabilities once before training and keep them in the run folder (always so for methods that train the base)",
            o => o.Preference.PrecomputeReference, (o, v, w) => o with { Preference = o.Preference with { PrecomputeReference = OptionSpec.Switch(v, w) } });
        Add("multi-label", OptionValueKind.Flag, "Several labels per text, separated by --label-separator",
            o => o.MultiLabel, (o, v, w) => o with { MultiLabel = OptionSpec.Switch(v, w) });
        Add("crf", OptionValueKind.Flag, "Token tasks: a CRF layer over the per-word scores",
            o => o.Crf, (o, v, w) => o with { Crf = OptionSpec.Switch(v, w) });
        Add("pooling", OptionValueKind.Text, "Sequence tasks: cls, mean or pooler (default: what the model was trained with)",
            o => o.Pooling, (o, v, w) => o with { Pooling = PoolingDefault.Parse(OptionSpec.Choice(v, w, ["cls", "mean", "pooler"])) });
        Add("method", OptionValueKind.Text, $"What trains: {string.Join(", ", TrainingMethods.Names)} (default full)",
            o => o.Method, (o, v, w) => o with { Method = TrainingMethods.Parse(OptionSpec.Text(v, w)) }, ["freeze"], ["--freeze"]);
        Add("precision", OptionValueKind.Text, "fp32 (default) or bf16 mixed precision (language models: over a stored or bf16 base)",
            o => o.Precision, (o, v, w) => o with { Precision = OptionSpec.Choice(v, w, ["fp32", "bf16"]) });
        Add("class-weights", OptionValueKind.NumberList, "Comma-separated cross-entropy weights, one per class in label order",
            o => o.ClassWeights, (o, v, w) => o with { ClassWeights = OptionSpec.NumberList(v, w) });
        Add("label-smoothing", OptionValueKind.Number, "Cross-entropy label smoothing (default 0)",
            o => o.LabelSmoothing, (o, v, w) => o with { LabelSmoothing = OptionSpec.Number(v, w) });

        // Data.
        Add("train", OptionValueKind.Text, "Training data: CSV, TSV, JSONL or CoNLL",
            o => o.Train, (o, v, w) => o with { Train = OptionSpec.Text(v, w) }, ["train_file"]);
        Add("validation", OptionValueKind.Text, "Validation data (default: a held-out part of --train)",
            o => o.Validation, (o, v, w) => o with { Validation = OptionSpec.Text(v, w) }, ["validation_file"]);
        Add("validation-fraction", OptionValueKind.Number, "Held-out fraction when no --validation is given (default 0.1)",
            o => o.ValidationFraction, (o, v, w) => o with { ValidationFraction = OptionSpec.Number(v, w) });
        Add("format", OptionValueKind.Text, "Data format: auto (by extension), csv, tsv, jsonl or conll",
            o => o.Format, (o, v, w) => o with { Format = Enum.Parse<DataFormat>(OptionSpec.Choice(v, w, ["auto", "csv", "tsv", "jsonl", "conll"]), true) });
        Add("text-column", OptionValueKind.Text, "Column holding the text (default text)",
            o => o.TextColumn, (o, v, w) => o with { TextColumn = OptionSpec.Text(v, w) });
        Add("text-pair-column", OptionValueKind.Text, "Column holding the second text of a pair",
            o => o.TextPairColumn, (o, v, w) => o with { TextPairColumn = OptionSpec.Text(v, w) });
        Add("label-column", OptionValueKind.Text, "Column holding the label (default label)",
            o => o.LabelColumn, (o, v, w) => o with { LabelColumn = OptionSpec.Text(v, w) });
        Add("label-separator", OptionValueKind.Text, "Separator of multi-label labels (default |)",
            o => o.LabelSeparator, (o, v, w) => o with { LabelSeparator = OptionSpec.Text(v, w) });
        Add("skip-bad-rows", OptionValueKind.Flag, "Skip malformed rows (counted and listed) instead of stopping",
            o => o.SkipBadRows, (o, v, w) => o with { SkipBadRows = OptionSpec.Switch(v, w) });
        Add("max-length", OptionValueKind.Integer, "Tokens per example, at most the model's positions; longer ones are truncated and counted (default 128)",
            o => o.MaxLength, (o, v, w) => o with { MaxLength = OptionSpec.Integer(v, w) }, ["max_seq_length"]);

        // How to train.
        Add("epochs", OptionValueKind.Integer, "Passes over the training data (default 3)",
            o => o.Training.Epochs, (o, v, w) => o with { Training = o.Training with { Epochs = OptionSpec.Integer(v, w) } }, ["num_train_epochs"]);
        Add("max-steps", OptionValueKind.Integer, "Stop after this many optimizer steps",
            o => o.Training.MaxSteps, (o, v, w) => o with { Training = o.Training with { MaxSteps = OptionSpec.Integer(v, w) } });
        Add("batch-size", OptionValueKind.Integer, "Examples per batch (default 16)",
            o => o.Training.BatchSize, (o, v, w) => o with { Training = o.Training with { BatchSize = OptionSpec.Integer(v, w) } });
        Add("lr", OptionValueKind.Number, $"Peak learning rate (default: the method's, {TrainingMethods.DefaultLearningRate:0.#####e0} for full fine-tuning)",
            o => o.Training.LearningRate, (o, v, w) => o with { Training = o.Training with { LearningRate = OptionSpec.Number(v, w) } }, ["learning_rate"]);
        Add("optimizer", OptionValueKind.Text, $"{string.Join(", ", OptimizerFactory.Names)} (default adamw)",
            o => o.Training.Optimizer, (o, v, w) => o with { Training = o.Training with { Optimizer = OptionSpec.Choice(v, w, OptimizerFactory.Names) } });
        Add("weight-decay", OptionValueKind.Number, "Weight decay (AdamW: matrices only; default 0.01)",
            o => o.Training.WeightDecay, (o, v, w) => o with { Training = o.Training with { WeightDecay = OptionSpec.Number(v, w) } });
        Add("momentum", OptionValueKind.Number, "SGD momentum (default 0.9)",
            o => o.Training.Momentum, (o, v, w) => o with { Training = o.Training with { Momentum = OptionSpec.Number(v, w) } });
        Add("schedule", OptionValueKind.Text, $"Learning-rate schedule: {string.Join(", ", LearningRateSchedule.Names)} (default linear)",
            o => o.Training.Schedule, (o, v, w) => o with { Training = o.Training with { Schedule = OptionSpec.Choice(v, w, LearningRateSchedule.Names.ToList()) } },
            ["lr_scheduler_type"]);
        Add("warmup", OptionValueKind.Number, "Warm-up fraction of the steps (default 0.06)",
            o => o.Training.WarmupRatio, (o, v, w) => o with { Training = o.Training with { WarmupRatio = OptionSpec.Number(v, w) } }, ["warmup_ratio"]);
        Add("max-grad-norm", OptionValueKind.Number, "Gradient clipping norm; 0 disables (default 1)",
            o => o.Training.MaxGradNorm, (o, v, w) => o with { Training = o.Training with { MaxGradNorm = OptionSpec.Number(v, w) } });
        Add("grad-accum", OptionValueKind.Integer, "Batches accumulated per optimizer step (default 1)",
            o => o.Training.GradientAccumulation, (o, v, w) => o with { Training = o.Training with { GradientAccumulation = OptionSpec.Integer(v, w) } },
            ["gradient_accumulation", "gradient_accumulation_steps"]);
        Add("seed", OptionValueKind.Integer, "Seed for data order, dropout and initialisation (default 42)",
            o => o.Training.Seed, (o, v, w) => o with { Training = o.Training with { Seed = OptionSpec.Integer(v, w) } });
        Add("eval-every", OptionValueKind.Integer, "Evaluate (and checkpoint) every N steps, besides epoch ends",
            o => o.Training.EvalEverySteps, (o, v, w) => o with { Training = o.Training with { EvalEverySteps = OptionSpec.Integer(v, w) } },
            ["eval_every_steps", "eval_steps"]);
        Add("patience", OptionValueKind.Integer, "Early stopping: evaluations without improvement",
            o => o.Training.EarlyStoppingPatience, (o, v, w) => o with { Training = o.Training with { EarlyStoppingPatience = OptionSpec.Integer(v, w) } },
            ["early_stopping_patience"]);
        Add("metric", OptionValueKind.Text, "Validation metric for the best model (default: the task's own: macro_f1, entity_f1 for BIO tags else token_accuracy, pearson, loss)",
            o => o.Training.MetricForBest, (o, v, w) => o with { Training = o.Training with { MetricForBest = OptionSpec.Text(v, w).Trim().ToLowerInvariant() } },
            ["metric_for_best", "metric_for_best_model"]);
        Add("log-every", OptionValueKind.Integer, "Print the training loss every N steps (default 10)",
            o => o.Training.LogEverySteps, (o, v, w) => o with { Training = o.Training with { LogEverySteps = OptionSpec.Integer(v, w) } },
            ["log_every_steps", "logging_steps"]);

        // Parameter-efficient methods.
        Add("virtual-tokens", OptionValueKind.Integer, "Prompt methods: virtual tokens (default 20)",
            o => o.Peft.VirtualTokens, (o, v, w) => o with { Peft = o.Peft with { VirtualTokens = OptionSpec.Integer(v, w) } }, ["num_virtual_tokens"]);
        Add("encoder-hidden", OptionValueKind.Integer, "P-tuning encoder / prefix projection hidden size",
            o => o.Peft.EncoderHidden, (o, v, w) => o with { Peft = o.Peft with { EncoderHidden = OptionSpec.Integer(v, w) } }, ["encoder_hidden_size"]);
        Add("encoder-type", OptionValueKind.Text, "P-tuning prompt encoder: mlp or lstm (default mlp)",
            o => o.Peft.EncoderType, (o, v, w) => o with { Peft = o.Peft with { EncoderType = OptionSpec.Choice(v, w, ["mlp", "lstm"]) } },
            ["encoder_reparameterization_type"]);
        Add("prompt-init", OptionValueKind.Text, "Prompt tuning init: random, sample_vocab or text (default random)",
            o => o.Peft.PromptInit, (o, v, w) => o with { Peft = o.Peft with { PromptInit = OptionSpec.Choice(v, w, ["random", "sample_vocab", "text"]) } },
            ["prompt_tuning_init"]);
        Add("prompt-init-text", OptionValueKind.Text, "Prompt tuning init text",
            o => o.Peft.PromptInitText, (o, v, w) => o with { Peft = o.Peft with { PromptInitText = OptionSpec.Text(v, w) } }, ["prompt_tuning_init_text"]);
        Add("prefix-dropout", OptionValueKind.Number, "P-tuning v2: dropout on the prefix (default 0.1)",
            o => o.Peft.PrefixDropout, (o, v, w) => o with { Peft = o.Peft with { PrefixDropout = OptionSpec.Number(v, w) } });
        Add("prefix-zero-init", OptionValueKind.Flag, "Prefix tuning: start from a zero prefix",
            o => o.Peft.PrefixZeroInit, (o, v, w) => o with { Peft = o.Peft with { PrefixZeroInit = OptionSpec.Switch(v, w) } });
        Add("lora-r", OptionValueKind.Integer, "LoRA rank (default 8)",
            o => o.Peft.LoraR, (o, v, w) => o with { Peft = o.Peft with { LoraR = OptionSpec.Integer(v, w) } }, ["r"]);
        Add("lora-alpha", OptionValueKind.Number, "LoRA alpha (default 16)",
            o => o.Peft.LoraAlpha, (o, v, w) => o with { Peft = o.Peft with { LoraAlpha = OptionSpec.Number(v, w) } });
        Add("lora-dropout", OptionValueKind.Number, "LoRA dropout (default 0.1)",
            o => o.Peft.LoraDropout, (o, v, w) => o with { Peft = o.Peft with { LoraDropout = OptionSpec.Number(v, w) } });
        Add("lora-targets", OptionValueKind.TextList, "Comma-separated Linear names LoRA wraps, or all-linear (default: the family's, query,value for BERT, q_proj,v_proj for Llama/Qwen2, c_attn for GPT-2)",
            o => o.Peft.LoraTargets, (o, v, w) => o with { Peft = o.Peft with { LoraTargets = OptionSpec.TextList(v, w) } }, ["target_modules"]);
        Add("lora-bias", OptionValueKind.Text, "LoRA biases that train: none, all or lora_only (default none)",
            o => o.Peft.LoraBias, (o, v, w) => o with { Peft = o.Peft with { LoraBias = OptionSpec.Choice(v, w, ["none", "all", "lora_only"]) } });
        Add("lora-dora", OptionValueKind.Flag, "LoRA: DoRA, a trained magnitude per output row over the direction W + BA (PEFT's use_dora)",
            o => o.Peft.LoraDora, (o, v, w) => o with { Peft = o.Peft with { LoraDora = OptionSpec.Switch(v, w) } }, ["use_dora"]);
        Add("lora-rslora", OptionValueKind.Flag, "LoRA: scale the update by alpha/sqrt(r) instead of alpha/r (rsLoRA, PEFT's use_rslora)",
            o => o.Peft.LoraRsLora, (o, v, w) => o with { Peft = o.Peft with { LoraRsLora = OptionSpec.Switch(v, w) } }, ["use_rslora"]);
        Add("lora-init", OptionValueKind.Text, "LoRA start: kaiming (PEFT's default), gaussian, pissa (top-r singular vectors of W) or olora (QR of W) (PEFT's init_lora_weights)",
            o => o.Peft.LoraInit, (o, v, w) => o with { Peft = o.Peft with { LoraInit = OptionSpec.Choice(v, w, ["kaiming", "gaussian", "pissa", "olora"]) } }, ["init_lora_weights"]);
        Add("loraplus-lr-ratio", OptionValueKind.Number, "LoRA+: lora_B matrices (and 1-d parameters) learn at --lr times this ratio (the paper suggests 16)",
            o => o.Training.LoraPlusLrRatio, (o, v, w) => o with { Training = o.Training with { LoraPlusLrRatio = OptionSpec.Number(v, w) } });
        Add("ia3-targets", OptionValueKind.TextList, "Comma-separated Linear names IA3 scales (default: the family's, key,value,output.dense for BERT, k_proj,v_proj,down_proj for Llama/Qwen2)",
            o => o.Peft.Ia3Targets, (o, v, w) => o with { Peft = o.Peft with { Ia3Targets = OptionSpec.TextList(v, w) } });
        Add("ia3-feedforward", OptionValueKind.TextList, "Of --ia3-targets, those scaled on their input (default: the family's among the targets, output.dense for BERT, down_proj for Llama/Qwen2)",
            o => o.Peft.Ia3FeedForward, (o, v, w) => o with { Peft = o.Peft with { Ia3FeedForward = OptionSpec.TextList(v, w) } },
            ["ia3_feed_forward", "feedforward_modules"]);

        // The run folder.
        Add("out", OptionValueKind.Text, "Run folder (default runs/latest)",
            o => o.Out, (o, v, w) => o with { Out = OptionSpec.Text(v, w) }, ["output_dir"]);
        Add("resume", OptionValueKind.Flag, "Continue the run in --out from its last checkpoint",
            o => o.Resume, (o, v, w) => o with { Resume = OptionSpec.Switch(v, w) });
        Add("threads", OptionValueKind.Integer, "libtorch threads per process (default: all cores; under mpirun, the cores shared among the processes on each machine)",
            o => o.Threads, (o, v, w) => o with { Threads = OptionSpec.Integer(v, w) }, ["num_threads"]);
        return specs;
    }
}
