using SharpTune.ModelFolders;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using SharpTune.Checkpoints;
using SharpTune.Data;
using SharpTune.Distributed;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Models.Memory;
using SharpTune.Peft;
using SharpTune.Peft.PromptTuning;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>What a finished run reports.</summary>
public sealed record RunSummary(
    string RunFolder, ParameterSummary Parameters, int TrainExamples, int ValidationExamples, int SkippedRows, int Truncated,
    long Steps, double SecondsPerStep, long PeakMemoryBytes, IReadOnlyDictionary<string, double> FinalMetrics, double? BestMetric,
    long? BestStep, string BestModelFolder, long AdapterBytes);

/// <summary>
/// A complete fine-tuning run, from files to a saved model: read and validate the data, build the label
/// set, load the pretrained encoder, add the head and the chosen method, train with evaluation and
/// checkpoints, then save the best and final models, the metrics log and the curves into the run folder.
/// </summary>
public sealed class FineTuneJob(FineTuneOptions options, Action<string> say, IReadOnlyList<ITrainerCallback>? progress = null)
{
    /// <param name="cancel">Stops training after the step under way, with a checkpoint (<see cref="TrainingInterruptedException"/>).</param>
    public RunSummary Run(CancellationToken cancel = default)
    {
        options.Validate();
        if (options.Task == "causal-lm") return new CausalLmJob(options, say, progress).Run(cancel);
        var clock = Stopwatch.StartNew();
        var world = World.Current;   // one process, or one rank of an MPI job; rank 0 alone writes
        int threads = DataParallelJob.ConfigureThreads(options.Threads, world);
        if (DataParallelJob.Describe(world, threads, options.Training.BatchSize) is { } job) say(job);
        string run = Path.GetFullPath(options.Out);
        using var runLock = world.IsMain ? RunFolderLock.Acquire(run) : null;   // one process trains in a folder at a time
        if (!options.Resume && Directory.Exists(Path.Combine(run, "checkpoints")))
            throw new ArgumentException($"{run} already holds a run; use --resume to continue it or choose another --out");
        var kind = options.Task switch
        {
            "regress" => TaskKind.Regression,
            "tokens" => TaskKind.Tokens,
            _ => options.MultiLabel ? TaskKind.MultiLabel : TaskKind.SingleLabel,
        };
        var method = PeftRegistry.TryGet(options.Method, out var peft) ? peft : null;
        var freeze = method is null ? FreezePolicy.Parse(options.Method) : null;
        // A run is a function of its options: everything that draws (the encoder's construction before its weights
        // load, the head, prompt encoders and adapters, dropout, data order) draws from generators seeded here or
        // from --seed, never from what this process happened to draw before.
        manual_seed(options.Training.Seed);

        // 1. Model, and the checks that need it, before any long work.
        using var pretrained = PretrainedEncoder.Load(options.Model);
        say($"model: {pretrained.Source}");
        var config = pretrained.Config;
        int promptPositions = method?.PositionsTaken(options.Peft) ?? 0;
        int available = config.MaxPositionEmbeddings - promptPositions;
        int maxLength = options.MaxLength;
        if (maxLength > available)
        {
            bool given = options.Sources.GetValueOrDefault("max-length", "default") != "default";
            string need = promptPositions == 0
                ? $"{options.Model} has {config.MaxPositionEmbeddings} positions"
                : $"the {promptPositions} virtual tokens of --method {options.Method} (--virtual-tokens) take {promptPositions} of {options.Model}'s {config.MaxPositionEmbeddings} positions";
            if (given || available < 4)
                throw new ArgumentException($"--max-length {maxLength} is longer than the model can read: {need}, leaving {Math.Max(0, available)} for text");
            maxLength = available;   // the default follows the model
            say($"max length {maxLength} tokens: {need}");
        }
        if (freeze is { What: FreezePolicy.Mode.BottomLayers } && freeze.Layers > config.NumHiddenLayers)
            throw new ArgumentException($"--method {options.Method} freezes more layers than {options.Model} has ({config.NumHiddenLayers})");
        method?.Validate(options.Peft, config);
        RunResources.Check(options, config, dtype => MemoryEstimator.WeightBytes(config, dtype), ScalarType.Float32, method, freeze, maxLength, world.IsMain, say);
        var (pooling, poolingSource) = kind == TaskKind.Tokens ? (Pooling.Cls, "token tasks read every token")
            : options.Pooling is { } chosen ? (chosen, options.Sources.GetValueOrDefault("pooling", "given"))
            : (pretrained.Pooling.Pooling, $"model: {pretrained.Pooling.Reason}");
        if (pooling == Pooling.Pooler && !pretrained.Model.HasPooler)
            throw new ArgumentException($"--pooling pooler: {options.Model} has no pretrained pooler; use cls or mean");
        if (kind != TaskKind.Tokens) say($"pooling: {PoolingDefault.Name(pooling)} ({poolingSource})");
        var tokenizer = pretrained.CreateTokenizer($"{options.Model} vocabulary");

        // 2. Data.
        var dataOptions = new DataOptions
        {
            Format = options.Format, TextColumn = options.TextColumn, TextPairColumn = options.TextPairColumn,
            LabelColumn = options.LabelColumn, LabelSeparator = options.LabelSeparator, SkipBadRows = options.SkipBadRows,
            Labels = kind switch { TaskKind.Regression => LabelKind.Regression, TaskKind.MultiLabel => LabelKind.MultiLabel, _ => LabelKind.SingleLabel },
        };
        var (trainData, validationData, labels, skipped) = kind == TaskKind.Tokens
            ? ReadTokens(dataOptions)
            : ReadTexts(dataOptions, kind);
        int numLabels = kind == TaskKind.Regression ? 1 : labels!.Count;
        var head = new HeadOptions(kind, numLabels, options.Crf, pooling == Pooling.Pooler, options.ClassWeights, options.LabelSmoothing,
            MeanPooling: pooling == Pooling.Mean);
        var metricNames = TaskMetrics.Names(head, labels);
        if (options.Training.MetricForBest != "auto" && !metricNames.Contains(options.Training.MetricForBest))
            throw new ArgumentException($"--metric '{options.Training.MetricForBest}' is not computed for this task" +
                $"{Suggestions.DidYouMean(options.Training.MetricForBest, metricNames)}; available: {string.Join(", ", metricNames)}");

        // 3. Head and method.
        DataParallelJob.CheckSameRun(world, new Dictionary<string, string>
        {
            ["its options"] = DataParallelJob.TextHash(RunConfig.ToJson(options)), ["the --train file"] = DataParallelJob.FileHash(options.Train),
            ["the --validation file"] = DataParallelJob.FileHash(options.Validation), ["the label set"] = DataParallelJob.TextHash(string.Join("\n", labels?.Labels ?? [])),
        });
        Directory.CreateDirectory(run);
        var settings = options.Peft;
        if (method is not null) settings = settings.WithPromptInitTokens(tokenizer);
        manual_seed(options.Training.Seed);
        using var model = TaskModelBuilder.Build(pretrained, head, method, settings, bf16: options.Precision == "bf16");
        freeze?.Apply(model);
        DataParallelJob.BroadcastTrainable(world, model);   // every rank starts from rank 0's initial weights
        var parameters = ParameterSummary.Of(model);
        say($"method {options.Method}: {parameters}");

        // 4. Encode.
        var encoder = new ExampleEncoder(tokenizer, head, labels, maxLength, options.LabelSeparator);
        var train = trainData(encoder);
        var validation = validationData(encoder);
        say($"data: {train.Examples.Count} training and {validation.Examples.Count} validation examples" +
            (skipped.Count > 0 ? $", {skipped.Count} bad rows skipped (listed in {Path.Combine(run, "skipped_rows.txt")})" : ""));
        if (skipped.Count > 0 && world.IsMain) AtomicFile.WriteAllText(Path.Combine(run, "skipped_rows.txt"), string.Join("\n", skipped) + "\n");
        int truncated = train.Truncated + validation.Truncated;
        if (truncated > 0) say($"truncated {truncated} example(s) to --max-length {maxLength} ({train.Truncated} training, {validation.Truncated} validation)");
        if (train.DroppedWords + validation.DroppedWords > 0)
            say($"{train.DroppedWords + validation.DroppedWords} word(s) fell past --max-length and get no prediction");

        // 5. Train.
        var training = options.Training;
        var spec = new TaskSpec
        {
            Kind = kind, NumLabels = numLabels, UseCrf = options.Crf, UsePooler = head.UsePooler, MeanPooling = head.MeanPooling, MaxLength = maxLength,
            LabelSeparator = options.LabelSeparator, Method = options.Method, BaseModel = options.Model,
            TextColumn = options.TextColumn, TextPairColumn = options.TextPairColumn, LabelColumn = options.LabelColumn,
        };
        var sources = new Dictionary<string, string>(options.Sources) { ["pooling"] = poolingSource };
        if (world.IsMain)
        {
            AtomicFile.WriteAllText(Path.Combine(run, RunConfig.FileName),
                RunConfig.ToJson(options with { Pooling = kind == TaskKind.Tokens ? null : pooling, MaxLength = maxLength, Sources = sources }) + "\n");
            labels?.Save(Path.Combine(run, TaskModelFolder.LabelsFile));
        }

        using var log = world.IsMain ? new RunLog(Path.Combine(run, "metrics.jsonl"), append: options.Resume) : new RunLog(TextWriter.Null);
        var saver = new BestModelSaver(Path.Combine(run, "best"), pretrained, labels, spec, method, settings);
        var callbacks = new List<ITrainerCallback> { log, saver };
        callbacks.AddRange(progress ?? []);
        var trainer = new Trainer(model, training, tokenizer.PadId, TaskMetrics.For(head, labels), callbacks);
        var trainClock = Stopwatch.StartNew();
        var (communication, gradients) = (world.CommunicationTime, GradientAllReduce.TotalTime);
        var state = trainer.Train(train.Examples, validation.Examples, new TrainingCheckpoint(run), options.Resume, cancel);
        double secondsPerStep = trainClock.Elapsed.TotalSeconds / Math.Max(1, state.GlobalStep);
        if (world.Size > 1) log.Write("data_parallel", DataParallelJob.Report(world, threads, options.Training.BatchSize,
            world.CommunicationTime - communication, GradientAllReduce.TotalTime - gradients, trainClock.Elapsed));

        // 6. Save and report.
        string final = Path.Combine(run, "final");
        if (world.IsMain) TaskModelFolder.Save(final, model, pretrained.Vocab, pretrained.LowerCase, labels, spec, method, settings);
        var finalOutput = DataParallel.Evaluate(world, model, validation.Examples, Math.Max(32, training.BatchSize), tokenizer.PadId);
        var (finalMetrics, report) = TaskMetrics.Compute(head, labels, validation.Examples, finalOutput.Predictions);
        var metrics = new Dictionary<string, double>(finalMetrics) { ["loss"] = finalOutput.Loss };
        if (world.IsMain) AtomicFile.WriteAllText(Path.Combine(run, "eval_final.json"), report.ToJson() + "\n");
        log.Write("final", metrics.ToDictionary(kv => $"eval_{kv.Key}", kv => (object?)kv.Value));
        if (world.IsMain) CurvesPlot.Save(Path.Combine(run, "curves.png"), log, log.Evaluations.LastOrDefault().Metrics?.Keys.FirstOrDefault(k => k is "macro_f1" or "token_accuracy" or "entity_f1" or "pearson"));
        long adapterBytes = method is null || !world.IsMain ? 0 : DirectorySize(Path.Combine(final, TaskModelFolder.AdapterFolder));
        say(report.ToTable());
        return new RunSummary(run, parameters, train.Examples.Count, validation.Examples.Count, skipped.Count, truncated,
            state.GlobalStep, secondsPerStep, PeakMemory(), metrics, state.BestMetric, state.BestStep,
            Directory.Exists(saver.Folder) ? saver.Folder : final, adapterBytes);
    }

    delegate EncodedData Encode(ExampleEncoder encoder);

    (Encode Train, Encode Validation, LabelMap? Labels, IReadOnlyList<string> Skipped) ReadTexts(DataOptions dataOptions, TaskKind kind)
    {
        var (train, validation, skipped) = ReadSplit(path => DataReader.ReadText(path, dataOptions), "examples",
            kind == TaskKind.SingleLabel ? e => e.Label : null);
        string? separator = kind == TaskKind.MultiLabel ? options.LabelSeparator : null;
        var labels = kind == TaskKind.Regression ? null
            : WithValidationLabels(LabelMap.FromExamples(train, separator), LabelMap.FromExamples(validation, separator));
        return (e => e.Encode(train), e => e.Encode(validation), labels, skipped);
    }

    (Encode Train, Encode Validation, LabelMap? Labels, IReadOnlyList<string> Skipped) ReadTokens(DataOptions dataOptions)
    {
        var (train, validation, skipped) = ReadSplit(path => DataReader.ReadTokens(path, dataOptions), "sentences", null);
        var labels = WithValidationLabels(LabelMap.FromExamples(train), LabelMap.FromExamples(validation));
        return (e => e.Encode(train), e => e.Encode(validation), labels, skipped);
    }

    /// <summary>
    /// The label set: every label of the labelled data given for training, validation included, so that a
    /// rare label that only the held-out part (or the validation file) carries still gets a class instead of
    /// failing the run. Such labels are reported: the head has a class for them that training never saw.
    /// </summary>
    LabelMap WithValidationLabels(LabelMap train, LabelMap validation)
    {
        var extra = validation.Labels.Where(l => !train.Contains(l)).ToList();
        if (extra.Count == 0) return train;
        say($"note: {extra.Count} label(s) occur only in the validation data, not in the training part: " +
            string.Join(", ", extra.Take(10).Select(l => $"'{l}'")) + (extra.Count > 10 ? ", ..." : "") + "; the model gets a class for each");
        return LabelMap.FromLabels(train.Labels.Concat(extra));
    }

    /// <summary>The training and validation examples: the --validation file, or a seeded held-out part of --train.</summary>
    (IReadOnlyList<T> Train, IReadOnlyList<T> Validation, List<string> Skipped) ReadSplit<T>(
        Func<string, DataSet<T>> read, string noun, Func<T, string?>? stratifyBy)
    {
        var train = read(options.Train!);
        var skipped = train.SkippedRows.ToList();
        if (options.Validation is { } path)
        {
            var validation = read(path);
            skipped.AddRange(validation.SkippedRows);
            return (train.Examples, validation.Examples, skipped);
        }
        var split = DataSplit.TrainValidation(train.Examples, options.ValidationFraction, options.Training.Seed, stratifyBy);
        say($"no --validation file: holding out {split.Validation.Count} of {train.Examples.Count} training {noun} (seed {options.Training.Seed})");
        return (split.Train, split.Validation, skipped);
    }

    static long DirectorySize(string folder) =>
        Directory.Exists(folder) ? Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length) : 0;

    /// <summary>Peak resident memory of this process (Linux VmHWM), or the current working set elsewhere.</summary>
    public static long PeakMemory()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException) { }
        return Environment.WorkingSet;
    }
}

/// <summary>Saves the model whenever validation improves, into the run's <c>best/</c> folder.</summary>
sealed class BestModelSaver(string folder, PretrainedEncoder pretrained, LabelMap? labels, TaskSpec spec, IPeftMethod? method, PeftSettings settings) : ITrainerCallback
{
    public string Folder => folder;

    public void OnNewBest(nn.Module model, EvaluationInfo evaluation) =>
        TaskModelFolder.Save(folder, (TaskModel)model, pretrained.Vocab, pretrained.LowerCase, labels, spec, method, settings);
}
