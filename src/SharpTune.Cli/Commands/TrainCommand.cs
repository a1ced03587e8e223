using System.CommandLine;
using System.Globalization;
using SharpTune.Data;
using SharpTune.Peft;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune train</c>: fine-tune a pretrained model on a labelled file. With no arguments it fine-tunes
/// the built-in <c>minilm</c> on the spam sample in <c>samples/</c>. Options given on the command line
/// override those of <c>--config</c>.
/// </summary>
public static class TrainCommand
{
    static readonly Option<string> Config = new("--config") { Description = "YAML or JSON file with the run's options (snake_case keys, as the run's run_config.json)" };
    static readonly Option<string> Model = new("--model") { Description = "Built-in model (minilm, arctic-xs), Hugging Face folder or ONNX file" };
    static readonly Option<string> Task = new("--task") { Description = "classify, regress or tokens" };
    static readonly Option<bool> MultiLabel = new("--multi-label") { Description = "Several labels per text, separated by --label-separator" };
    static readonly Option<bool> Crf = new("--crf") { Description = "Token tasks: a CRF layer over the per-word scores" };
    static readonly Option<bool> NoPooler = new("--no-pooler") { Description = "Read [CLS] directly instead of through the pretrained pooler" };
    static readonly Option<bool> MeanPooling = new("--mean-pooling") { Description = "Average the tokens' states instead of reading [CLS] (suits sentence-embedding models such as minilm)" };
    static readonly Option<string> Train = new("--train") { Description = "Training data: CSV, TSV, JSONL or CoNLL" };
    static readonly Option<string> Validation = new("--validation") { Description = "Validation data; default: a held-out part of --train" };
    static readonly Option<double> ValidationFraction = new("--validation-fraction") { Description = "Held-out fraction when no --validation is given (default 0.1)" };
    static readonly Option<DataFormat> Format = new("--format") { Description = "Data format: auto (by extension), csv, tsv, jsonl, conll" };
    static readonly Option<string> TextColumn = new("--text-column") { Description = "Column holding the text (default text)" };
    static readonly Option<string> TextPairColumn = new("--text-pair-column") { Description = "Column holding the second text of a pair" };
    static readonly Option<string> LabelColumn = new("--label-column") { Description = "Column holding the label (default label)" };
    static readonly Option<string> LabelSeparator = new("--label-separator") { Description = "Separator of multi-label labels (default |)" };
    static readonly Option<bool> SkipBadRows = new("--skip-bad-rows") { Description = "Skip malformed rows (counted and listed) instead of stopping" };
    static readonly Option<int> Epochs = new("--epochs") { Description = "Passes over the training data (default 3)" };
    static readonly Option<int> MaxSteps = new("--max-steps") { Description = "Stop after this many optimizer steps" };
    static readonly Option<int> BatchSize = new("--batch-size") { Description = "Examples per batch (default 16)" };
    static readonly Option<int> MaxLength = new("--max-length") { Description = "Tokens per example; longer ones are truncated and counted (default 128)" };
    static readonly Option<double> LearningRate = new("--lr") { Description = "Peak learning rate (default 5e-5, or the method's default)" };
    static readonly Option<string> Optimizer = new("--optimizer") { Description = "adamw, adam or sgd" };
    static readonly Option<double> WeightDecay = new("--weight-decay") { Description = "Weight decay (AdamW: matrices only; default 0.01)" };
    static readonly Option<string> Schedule = new("--schedule") { Description = "constant, linear or cosine" };
    static readonly Option<double> Warmup = new("--warmup") { Description = "Warm-up fraction of the steps (default 0.06)" };
    static readonly Option<double> MaxGradNorm = new("--max-grad-norm") { Description = "Gradient clipping norm; 0 disables (default 1)" };
    static readonly Option<int> GradAccum = new("--grad-accum") { Description = "Batches accumulated per optimizer step (default 1)" };
    static readonly Option<int> Seed = new("--seed") { Description = "Seed for data order, dropout and initialisation (default 42)" };
    static readonly Option<int> EvalEvery = new("--eval-every") { Description = "Evaluate (and checkpoint) every N steps, besides epoch ends" };
    static readonly Option<int> Patience = new("--patience") { Description = "Early stopping: evaluations without improvement" };
    static readonly Option<string> Metric = new("--metric") { Description = "Validation metric for the best model (default: macro_f1, token_accuracy, pearson or loss)" };
    static readonly Option<string> Freeze = new("--freeze") { Description = "full, head, embeddings or freeze:K" };
    static readonly Option<string> Method = new("--method") { Description = "full, head, freeze:K, bitfit, prompt, ptuning, prefix, ptuning-v2, lora, ia3" };
    static readonly Option<double> LabelSmoothing = new("--label-smoothing") { Description = "Cross-entropy label smoothing" };
    static readonly Option<string> ClassWeights = new("--class-weights") { Description = "Comma-separated cross-entropy weights, one per class in label order" };
    static readonly Option<int> VirtualTokens = new("--virtual-tokens") { Description = "Prompt methods: virtual tokens (default 20)" };
    static readonly Option<int> EncoderHidden = new("--encoder-hidden") { Description = "P-tuning encoder / prefix projection hidden size" };
    static readonly Option<string> EncoderType = new("--encoder-type") { Description = "P-tuning prompt encoder: mlp or lstm" };
    static readonly Option<string> PromptInit = new("--prompt-init") { Description = "Prompt tuning init: random, sample_vocab or text" };
    static readonly Option<string> PromptInitText = new("--prompt-init-text") { Description = "Prompt tuning init text" };
    static readonly Option<int> LoraR = new("--lora-r") { Description = "LoRA rank (default 8)" };
    static readonly Option<double> LoraAlpha = new("--lora-alpha") { Description = "LoRA alpha (default 16)" };
    static readonly Option<double> LoraDropout = new("--lora-dropout") { Description = "LoRA dropout (default 0.1)" };
    static readonly Option<string> LoraTargets = new("--lora-targets") { Description = "Comma-separated Linear names LoRA wraps (default query,value)" };
    static readonly Option<string> Precision = new("--precision") { Description = "fp32 (default) or bf16 mixed precision" };
    static readonly Option<string> Out = new("--out") { Description = "Run folder (default runs/latest)" };
    static readonly Option<bool> Resume = new("--resume") { Description = "Continue the run in --out from its last checkpoint" };

    public static Command Create()
    {
        var command = new Command("train", "Fine-tune a pretrained model on labelled data; with no arguments, minilm on the spam sample.");
        foreach (var option in new Option[]
        {
            Config, Model, Task, MultiLabel, Crf, NoPooler, MeanPooling, Train, Validation, ValidationFraction, Format, TextColumn, TextPairColumn,
            LabelColumn, LabelSeparator, SkipBadRows, Epochs, MaxSteps, BatchSize, MaxLength, LearningRate, Optimizer, WeightDecay,
            Schedule, Warmup, MaxGradNorm, GradAccum, Seed, EvalEvery, Patience, Metric, Freeze, Method, LabelSmoothing, ClassWeights,
            VirtualTokens, EncoderHidden, EncoderType, PromptInit, PromptInitText, LoraR, LoraAlpha, LoraDropout, LoraTargets, Precision, Out, Resume,
        })
            command.Options.Add(option);
        command.SetAction(result => CommandRunner.Run(() => Run(Build(result))));
        return command;
    }

    /// <summary>The run's options: defaults, then the config file, then what the command line gives.</summary>
    public static FineTuneOptions Build(ParseResult result)
    {
        bool Given(Option option) => result.GetResult(option) is { Implicit: false };
        T Get<T>(Option<T> option) => result.GetValue(option)!;

        var o = Given(Config) ? ConfigFile.Load(Get(Config)) : DefaultRun();
        var t = o.Training;
        var p = o.Peft;
        if (Given(Model)) o = o with { Model = Get(Model) };
        if (Given(Task)) o = o with { Task = Get(Task) };
        if (Given(MultiLabel)) o = o with { MultiLabel = Get(MultiLabel) };
        if (Given(Crf)) o = o with { Crf = Get(Crf) };
        if (Given(NoPooler)) o = o with { UsePooler = !Get(NoPooler) };
        if (Given(MeanPooling)) o = o with { MeanPooling = Get(MeanPooling) };
        if (Given(Train)) o = o with { Train = Get(Train), Validation = Given(Validation) ? Get(Validation) : null };
        if (Given(Validation)) o = o with { Validation = Get(Validation) };
        if (Given(ValidationFraction)) o = o with { ValidationFraction = Get(ValidationFraction) };
        if (Given(Format)) o = o with { Format = Get(Format) };
        if (Given(TextColumn)) o = o with { TextColumn = Get(TextColumn) };
        if (Given(TextPairColumn)) o = o with { TextPairColumn = Get(TextPairColumn) };
        if (Given(LabelColumn)) o = o with { LabelColumn = Get(LabelColumn) };
        if (Given(LabelSeparator)) o = o with { LabelSeparator = Get(LabelSeparator) };
        if (Given(SkipBadRows)) o = o with { SkipBadRows = Get(SkipBadRows) };
        if (Given(MaxLength)) o = o with { MaxLength = Get(MaxLength) };
        if (Given(LabelSmoothing)) o = o with { LabelSmoothing = Get(LabelSmoothing) };
        if (Given(ClassWeights)) o = o with { ClassWeights = ParseList(Get(ClassWeights), "--class-weights") };
        if (Given(Out)) o = o with { Out = Get(Out) };
        if (Given(Precision)) o = o with { Precision = Get(Precision) };
        if (Given(Resume)) o = o with { Resume = Get(Resume) };
        if (Given(Freeze) && Given(Method) && Get(Freeze) != Get(Method))
            throw new ArgumentException("give either --freeze or --method, not both");
        if (Given(Freeze)) o = o with { Method = FreezePolicy.Parse(Get(Freeze)).ToString() };
        if (Given(Method))
        {
            string method = Get(Method);
            o = o with { Method = PeftRegistry.TryGet(method, out _) ? method.ToLowerInvariant() : FreezePolicy.Parse(method).ToString() };
        }

        if (Given(Epochs)) t = t with { Epochs = Get(Epochs) };
        if (Given(MaxSteps)) t = t with { MaxSteps = Get(MaxSteps) };
        if (Given(BatchSize)) t = t with { BatchSize = Get(BatchSize) };
        if (Given(LearningRate)) { t = t with { LearningRate = Get(LearningRate) }; o = o with { LearningRateGiven = true }; }
        if (Given(Optimizer)) t = t with { Optimizer = Get(Optimizer) };
        if (Given(WeightDecay)) t = t with { WeightDecay = Get(WeightDecay) };
        if (Given(Schedule)) t = t with { Schedule = Get(Schedule) };
        if (Given(Warmup)) t = t with { WarmupRatio = Get(Warmup) };
        if (Given(MaxGradNorm)) t = t with { MaxGradNorm = Get(MaxGradNorm) };
        if (Given(GradAccum)) t = t with { GradientAccumulation = Get(GradAccum) };
        if (Given(Seed)) t = t with { Seed = Get(Seed) };
        if (Given(EvalEvery)) t = t with { EvalEverySteps = Get(EvalEvery) };
        if (Given(Patience)) t = t with { EarlyStoppingPatience = Get(Patience) };
        if (Given(Metric)) t = t with { MetricForBest = Get(Metric) };

        if (Given(VirtualTokens)) p = p with { VirtualTokens = Get(VirtualTokens) };
        if (Given(EncoderHidden)) p = p with { EncoderHidden = Get(EncoderHidden) };
        if (Given(EncoderType)) p = p with { EncoderType = Get(EncoderType) };
        if (Given(PromptInit)) p = p with { PromptInit = Get(PromptInit) };
        if (Given(PromptInitText)) p = p with { PromptInitText = Get(PromptInitText) };
        if (Given(LoraR)) p = p with { LoraR = Get(LoraR) };
        if (Given(LoraAlpha)) p = p with { LoraAlpha = Get(LoraAlpha) };
        if (Given(LoraDropout)) p = p with { LoraDropout = Get(LoraDropout) };
        if (Given(LoraTargets)) p = p with { LoraTargets = Get(LoraTargets).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) };
        return (o with { Training = t, Peft = p }).Validate();
    }

    /// <summary>The no-argument run: minilm on the committed spam sample.</summary>
    static FineTuneOptions DefaultRun()
    {
        string? samples = FindUpwards(Path.Combine("samples", "spam"));
        return new FineTuneOptions
        {
            Model = "minilm",
            Train = samples is null ? null : Path.Combine(samples, "train.csv"),
            Validation = samples is null ? null : Path.Combine(samples, "validation.csv"),
            // A new folder per run, so the README's command can be run again without --out or --resume.
            Out = Path.Combine("runs", $"spam-minilm-{DateTime.Now:yyyyMMdd-HHmmss}"),
            // The settings that beat ML.NET on the full SpamAssassin split (docs/results.md): minilm is a
            // sentence encoder trained with mean pooling.
            Training = new TrainingOptions { Epochs = 3, BatchSize = 16, LearningRate = 1e-4 },
            MeanPooling = true,
            LearningRateGiven = true,
            MaxLength = 128,
        };
    }

    static string? FindUpwards(string relative)
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, relative))) return Path.Combine(dir.FullName, relative);
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, relative))) return Path.Combine(dir.FullName, relative);
        return null;
    }

    static float[] ParseList(string text, string option) =>
        text.Split(',', StringSplitOptions.TrimEntries).Select(v =>
            float.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out float f) ? f
                : throw new ArgumentException($"{option}: '{v}' is not a number")).ToArray();

    static int Run(FineTuneOptions options)
    {
        var progress = new ConsoleProgress();
        if (options.Resume && !Directory.Exists(Path.Combine(options.Out, "checkpoints")))
            throw new ArgumentException($"--resume: {options.Out} has no checkpoints to resume from");
        ConsoleProgress.Say($"sharptune train: {options.Model}, task {options.Task}, method {options.Method}, data {options.Train} -> {Path.GetFullPath(options.Out)}");
        var job = new FineTuneJob(options, ConsoleProgress.Say, [progress]);
        var summary = progress.Run(() => job.Run());
        ConsoleProgress.Say(RunReport.Format(summary));
        return 0;
    }
}
