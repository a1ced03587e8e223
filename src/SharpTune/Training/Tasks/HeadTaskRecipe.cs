using SharpTune.Checkpoints;
using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.ModelFolders;
using SharpTune.Models;
using SharpTune.Models.Memory;
using SharpTune.Peft;
using SharpTune.Peft.PromptTuning;
using static TorchSharp.torch;

namespace SharpTune.Training.Tasks;

/// <summary>
/// A task head on a pretrained encoder (classification, regression, tagging): the label set from the data, the
/// encoder with the head and the chosen method, examples encoded for the head; saved in Hugging Face's layout with the
/// task, the labels and the adapter.
/// </summary>
public sealed class HeadTaskRecipe(FineTuneOptions options, TaskKind kind) : RunRecipe<EncodedExample>(options)
{
    PretrainedEncoder? pretrained;
    TaskModel? model;
    TaskObjective? objective;
    LabelMap? labels;
    TaskSpec? spec;
    IPeftMethod? method;
    PeftSettings settings = options.Peft;

    public override RunPlan<EncodedExample> Prepare(RunContext run)
    {
        var say = run.Say;
        method = PeftRegistry.TryGet(Options.Method, out var peft) ? peft : null;
        var freeze = method is null ? FreezePolicy.Parse(Options.Method) : null;

        // 1. Model, and the checks that need it, before any long work.
        pretrained = PretrainedEncoder.Load(Options.Model);
        say($"model: {pretrained.Source}");
        var config = pretrained.Config;
        int maxLength = run.MaxLength(config.MaxPositionEmbeddings, method?.PositionsTaken(settings, config) ?? 0);
        if (freeze is { What: FreezePolicy.Mode.BottomLayers } && freeze.Layers > config.NumHiddenLayers)
            throw new ArgumentException($"--method {Options.Method} freezes more layers than {Options.Model} has ({config.NumHiddenLayers})");
        method?.Validate(settings, config);
        RunResources.Check(Options, config, dtype => MemoryEstimator.WeightBytes(config, dtype), ScalarType.Float32, method, freeze, maxLength, run.World.IsMain, say);
        var probe = TaskHeads.Create(new HeadOptions(kind, kind == TaskKind.Regression ? 1 : 2));   // what the task reads, before the labels are known
        bool sequence = probe.Options.IsSequenceTask;
        var (pooling, poolingSource) = !sequence ? (Pooling.Cls, "token tasks read every token")
            : Options.Pooling is { } chosen ? (chosen, Options.Sources.GetValueOrDefault("pooling", "given"))
            : (pretrained.Pooling.Pooling, $"model: {pretrained.Pooling.Reason}");
        if (pooling == Pooling.Pooler && !pretrained.Model.HasPooler)
            throw new ArgumentException($"--pooling pooler: {Options.Model} has no pretrained pooler; use cls or mean");
        if (sequence) say($"pooling: {PoolingDefault.Name(pooling)} ({poolingSource})");
        var tokenizer = pretrained.CreateTokenizer($"{Options.Model} vocabulary");

        // 2. Data, and the label set from it.
        var labelKind = probe.DataLabels;
        var dataOptions = new DataOptions
        {
            Format = Options.Format, TextColumn = Options.TextColumn, TextPairColumn = Options.TextPairColumn,
            LabelColumn = Options.LabelColumn, LabelSeparator = Options.LabelSeparator, SkipBadRows = Options.SkipBadRows, Labels = labelKind,
        };
        var (trainData, validationData, skipped) = sequence ? ReadTexts(run, dataOptions, labelKind) : ReadWords(run, dataOptions);
        int numLabels = labelKind == LabelKind.Regression ? 1 : labels!.Count;
        var head = new HeadOptions(kind, numLabels, Options.Crf, pooling == Pooling.Pooler, Options.ClassWeights, Options.LabelSmoothing,
            MeanPooling: pooling == Pooling.Mean);
        var metricNames = TaskMetrics.Names(head, labels);
        if (Options.Training.MetricForBest != "auto" && !metricNames.Contains(Options.Training.MetricForBest))
            throw new ArgumentException($"--metric '{Options.Training.MetricForBest}' is not computed for this task" +
                $"{Suggestions.DidYouMean(Options.Training.MetricForBest, metricNames)}; available: {string.Join(", ", metricNames)}");

        // 3. Head and method.
        if (method is not null) settings = settings.WithPromptInitTokens(tokenizer);
        run.Seed();
        model = TaskModelBuilder.Build(pretrained, head, method, settings, bf16: Options.Precision == "bf16");
        freeze?.Apply(model);
        var parameters = ParameterSummary.Of(model);
        say($"method {Options.Method}: {parameters}");

        // 4. Encode.
        var encoder = new ExampleEncoder(tokenizer, head, labels, maxLength, Options.LabelSeparator);
        var train = trainData(encoder);
        var validation = validationData(encoder);
        say($"data: {train.Examples.Count} training and {validation.Examples.Count} validation examples" +
            (skipped.Count > 0 ? $", {skipped.Count} bad rows skipped (listed in {run.SkippedRowsFile})" : ""));
        int truncated = train.Truncated + validation.Truncated;
        if (truncated > 0) say($"truncated {truncated} example(s) to --max-length {maxLength} ({train.Truncated} training, {validation.Truncated} validation)");
        if (train.DroppedWords + validation.DroppedWords > 0)
            say($"{train.DroppedWords + validation.DroppedWords} word(s) fell past --max-length and get no prediction");

        spec = new TaskSpec
        {
            Kind = kind, NumLabels = numLabels, UseCrf = Options.Crf, UsePooler = head.UsePooler, MeanPooling = head.MeanPooling, MaxLength = maxLength,
            LabelSeparator = Options.LabelSeparator, Method = Options.Method, BaseModel = Options.Model,
            TextColumn = Options.TextColumn, TextPairColumn = Options.TextPairColumn, LabelColumn = Options.LabelColumn,
        };
        objective = new TaskObjective(model, tokenizer.PadId, labels);
        var resolved = Options with
        {
            Pooling = sequence ? pooling : null, MaxLength = maxLength,
            Sources = new Dictionary<string, string>(Options.Sources) { ["pooling"] = poolingSource },
        };
        return new RunPlan<EncodedExample>(objective, parameters, train.Examples, validation.Examples, train.Examples.Count, truncated, skipped, resolved)
        {
            SameRunFacts = new Dictionary<string, string> { ["the label set"] = DataParallelJob.TextHash(string.Join("\n", labels?.Labels ?? [])) },
        };
    }

    public override void SaveModel(string folder) =>
        TaskModelFolder.Save(folder, model!, pretrained!.Vocab, pretrained.LowerCase, labels, spec!, method, settings);

    public override void WriteRunFiles(string run) => labels?.Save(Path.Combine(run, TaskModelFolder.LabelsFile));

    public override string? AdapterFolder => method is null ? null : TaskModelFolder.AdapterFolder;

    public override void ReportFinal(RunContext run, IReadOnlyDictionary<string, double> metrics, TrainerState state)
    {
        var report = objective!.LastReport ?? throw new InvalidOperationException("the final evaluation kept no report");
        if (run.World.IsMain) AtomicFile.WriteAllText(Path.Combine(run.Folder, "eval_final.json"), report.ToJson() + "\n");
        run.Say(report.ToTable());
    }

    public override void Dispose()
    {
        model?.Dispose();
        pretrained?.Dispose();
        base.Dispose();
    }

    delegate EncodedData Encode(ExampleEncoder encoder);

    (Encode Train, Encode Validation, List<string> Skipped) ReadTexts(RunContext run, DataOptions dataOptions, LabelKind labelKind)
    {
        var (train, validation, skipped) = run.ReadSplit(path => DataReader.ReadText(path, dataOptions), "examples",
            labelKind == LabelKind.SingleLabel ? e => e.Label : null);
        string? separator = labelKind == LabelKind.MultiLabel ? Options.LabelSeparator : null;
        labels = labelKind == LabelKind.Regression ? null
            : WithValidationLabels(run, LabelMap.FromExamples(train, separator), LabelMap.FromExamples(validation, separator));
        return (e => e.Encode(train), e => e.Encode(validation), skipped);
    }

    (Encode Train, Encode Validation, List<string> Skipped) ReadWords(RunContext run, DataOptions dataOptions)
    {
        var (train, validation, skipped) = run.ReadSplit(path => DataReader.ReadTokens(path, dataOptions), "sentences");
        labels = WithValidationLabels(run, LabelMap.FromExamples(train), LabelMap.FromExamples(validation));
        return (e => e.Encode(train), e => e.Encode(validation), skipped);
    }

    /// <summary>
    /// The label set: every label of the labelled data given for training, validation included, so that a
    /// rare label that only the held-out part (or the validation file) carries still gets a class instead of
    /// failing the run. Such labels are reported: the head has a class for them that training never saw.
    /// </summary>
    static LabelMap WithValidationLabels(RunContext run, LabelMap train, LabelMap validation)
    {
        var extra = validation.Labels.Where(l => !train.Contains(l)).ToList();
        if (extra.Count == 0) return train;
        run.Say($"note: {extra.Count} label(s) occur only in the validation data, not in the training part: " +
            string.Join(", ", extra.Take(10).Select(l => $"'{l}'")) + (extra.Count > 10 ? ", ..." : "") + "; the model gets a class for each");
        return LabelMap.FromLabels(train.Labels.Concat(extra));
    }
}
