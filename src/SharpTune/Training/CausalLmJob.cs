using System.Diagnostics;
using SharpTune.Checkpoints;
using SharpTune.Data;
using SharpTune.Distributed;
using SharpTune.Heads;
using SharpTune.ModelFolders;
using SharpTune.Models;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Memory;
using SharpTune.Peft;
using SharpTune.Peft.BitFit;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// A language-model fine-tuning run (<c>--task causal-lm</c>), from files to a saved model: load the decoder (Hugging
/// Face folder or GGUF) with the chosen method built in, read and tokenize the data by the model's rules, train with
/// evaluation (loss, perplexity) and checkpoints, then save the best and final models (adapter in PEFT's format, or the
/// whole model) into the run folder.
/// </summary>
public sealed class CausalLmJob(FineTuneOptions options, Action<string> say, IReadOnlyList<ITrainerCallback>? progress = null)
{
    /// <param name="cancel">Stops training after the step under way, with a checkpoint (<see cref="TrainingInterruptedException"/>).</param>
    public RunSummary Run(CancellationToken cancel = default)
    {
        options.Validate();
        string run = Path.GetFullPath(options.Out);
        var world = World.Current;   // one process, or one rank of an MPI job; rank 0 alone writes
        using var runLock = world.IsMain ? RunFolderLock.Acquire(run) : null;   // one process trains in a folder at a time
        if (!options.Resume && Directory.Exists(Path.Combine(run, "checkpoints")))
            throw new ArgumentException($"{run} already holds a run; use --resume to continue it or choose another --out");
        int threads = DataParallelJob.ConfigureThreads(options.Threads, world);
        if (DataParallelJob.Describe(world, threads, options.Training.BatchSize) is { } job) say(job);
        if (options.Precision != "fp32")
            throw new ArgumentException("--precision bf16 is not available for --task causal-lm yet; use fp32");
        var method = PeftRegistry.TryGet(options.Method, out var peft) ? peft : null;
        var freeze = method is null ? FreezePolicy.Parse(options.Method) : null;
        if (freeze is { What: FreezePolicy.Mode.Encoder })
            throw new ArgumentException("--method head does not apply to a language model (its head is the pretrained lm_head); use lora, freeze:K or full");
        manual_seed(options.Training.Seed);

        // 1. The architecture and every check that needs it, before a weight is read.
        string baseModel = File.Exists(options.Model) || Directory.Exists(options.Model) ? Path.GetFullPath(options.Model)
            : throw new FileNotFoundException($"--model {options.Model}: no such language model (a Hugging Face folder or a .gguf file)", options.Model);
        var shape = LanguageModel.ReadConfig(baseModel);
        var settings = options.Peft;
        method?.Validate(settings, shape);
        if (freeze is { What: FreezePolicy.Mode.BottomLayers } && freeze.Layers > shape.LayerCount)
            throw new ArgumentException($"--method {options.Method} freezes more layers than {options.Model} has ({shape.LayerCount})");
        if (options.Packing && method is PromptLearningMethod)
            throw new ArgumentException($"--packing does not combine with --method {options.Method}: the virtual tokens belong to one example per row");
        int promptPositions = method is PromptLearningMethod ? settings.VirtualTokens : 0;
        int available = shape.MaxPositions - promptPositions;
        int maxLength = options.MaxLength;
        if (maxLength > available)
        {
            bool given = options.Sources.GetValueOrDefault("max-length", "default") != "default";
            if (given || available < 4)
                throw new ArgumentException($"--max-length {maxLength} is longer than {options.Model}'s context ({shape.MaxPositions} positions" +
                    (promptPositions > 0 ? $", {promptPositions} of them taken by the virtual tokens)" : ")"));
            maxLength = available;
            say($"max length {maxLength} tokens: the model's context");
        }
        // How the base is held (a stored base keeps a GGUF's matrices in their blocks, QLoRA-style: only adapters and
        // prompt modules can train over it), then whether the run fits in memory and on disk that way.
        var storage = BaseStorage(options, baseModel, method, say);
        RunResources.Check(options, shape, dtype => storage.Stored && dtype == ScalarType.Float32
                ? MemoryEstimator.StoredWeightBytes(Models.Decoders.Gguf.GgufModelMap.Open(baseModel)) : MemoryEstimator.WeightBytes(baseModel, shape, dtype),
            storage.Dtype, method, freeze, maxLength, world.IsMain, say);

        // 2. Model with the method built in. A bf16 base is read straight into bf16 parameters (the fp32 copy would
        // need twice the base's bytes at load); only what trains is then given back fp32.
        bool bf16Base = !storage.Stored && storage.Dtype == ScalarType.BFloat16;
        using var lm = LanguageModel.Load(baseModel, storage, options.ChatTemplate, method?.Linears(settings, shape, DecoderLinears.Plain));
        say($"model: {lm.Source}");
        foreach (string note in lm.Notes) say($"note: {note}");
        manual_seed(options.Training.Seed);
        var promptModule = method?.CreatePromptEncoder(settings, shape, lm.Model.WordEmbeddings);
        using var model = new CausalLmModel(lm.Model, promptModule);
        if (method is not null) method.Freeze(model, settings); else freeze!.Apply(model);
        if (bf16Base)
        {
            int trainable = MixedDtype.Convert(model, ScalarType.Float32, (_, p) => p.requires_grad);
            say($"base held in bf16, read as bf16; the {trainable} tensors that train are fp32");
        }
        if (options.GradientCheckpointing)
        {
            if (lm.Model is not IGradientCheckpointing checkpointed)
                throw new ArgumentException($"--gradient-checkpointing: {lm.Model.GetType().Name} cannot recompute its layers");
            checkpointed.GradientCheckpointing = true;
        }
        var parameters = ParameterSummary.Of(model);
        say($"method {options.Method}: {parameters}");

        // 3. Data, read and tokenized by the model's rules.
        var (trainRows, validationRows, skipped) = ReadData();
        var encoder = new CausalLmEncoder(lm.Tokenizer, lm.Template, maxLength, options.TrainOnPrompt);
        if (lm.Template is null && trainRows.Concat(validationRows).Any(e => e.Messages is not null))
            say("note: the model ships no chat template; conversations are written as 'User: ...' / 'Assistant: ...' lines (give one with --chat-template)");
        var train = encoder.Encode(trainRows);
        var validation = encoder.Encode(validationRows);
        var dropped = train.Dropped.Concat(validation.Dropped).ToList();
        skipped.AddRange(dropped);
        DataParallelJob.CheckSameRun(world, new Dictionary<string, string>
        {
            ["its options"] = DataParallelJob.TextHash(RunConfig.ToJson(options)), ["the --train file"] = DataParallelJob.FileHash(options.Train),
            ["the --validation file"] = DataParallelJob.FileHash(options.Validation),
        });
        DataParallelJob.BroadcastTrainable(world, model);   // every rank starts from rank 0's adapters and prompt encoder
        Directory.CreateDirectory(run);
        if (skipped.Count > 0 && world.IsMain) AtomicFile.WriteAllText(Path.Combine(run, "skipped_rows.txt"), string.Join("\n", skipped) + "\n");
        if (train.Examples.Count == 0) throw new ArgumentException($"{options.Train}: no example has anything to learn within --max-length {maxLength}");
        var trainExamples = options.Packing ? CausalLmEncoder.Pack(train.Examples, maxLength) : train.Examples;
        say($"data: {train.Examples.Count} training and {validation.Examples.Count} validation examples " +
            $"({trainRows.GroupBy(r => r.Form).Select(g => $"{g.Count()} {g.Key}").Aggregate((a, b) => $"{a}, {b}")})" +
            (options.Packing ? $", packed into {trainExamples.Count} rows of at most {maxLength} tokens" : "") +
            (skipped.Count > 0 ? $", {skipped.Count} rows skipped (listed in {Path.Combine(run, "skipped_rows.txt")})" : ""));
        int truncated = train.Truncated + validation.Truncated;
        if (truncated > 0) say($"truncated {truncated} example(s) to --max-length {maxLength} ({train.Truncated} training, {validation.Truncated} validation)");

        // 4. Train.
        var sources = new Dictionary<string, string>(options.Sources);
        if (world.IsMain)
            AtomicFile.WriteAllText(Path.Combine(run, RunConfig.FileName), RunConfig.ToJson(options with { MaxLength = maxLength, Sources = sources }) + "\n");
        long padId = lm.Tokenizer.PaddingId;
        using var log = world.IsMain ? new RunLog(Path.Combine(run, "metrics.jsonl"), append: options.Resume) : new RunLog(TextWriter.Null);
        var saver = new BestLanguageModelSaver(Path.Combine(run, "best"), baseModel, options.Method, method, settings, lm.Template?.Text);
        var callbacks = new List<ITrainerCallback> { log, saver };
        var samples = options.EvalGenerate > 0 ? new GeneratedSamples(Path.Combine(run, "samples.jsonl"), lm.Tokenizer, options.EvalGenerate) : null;
        if (samples is not null) callbacks.Add(samples);
        callbacks.AddRange(progress ?? []);
        var objective = new CausalLmObjective(model, padId, samples);
        var trainer = new Trainer<CausalLmExample>(objective, options.Training, callbacks);
        var clock = Stopwatch.StartNew();
        var (communication, gradients) = (world.CommunicationTime, GradientAllReduce.TotalTime);
        var state = trainer.Train(trainExamples, validation.Examples, new TrainingCheckpoint(run), options.Resume, cancel);
        double secondsPerStep = clock.Elapsed.TotalSeconds / Math.Max(1, state.GlobalStep);
        if (world.Size > 1) log.Write("data_parallel", DataParallelJob.Report(world, threads, options.Training.BatchSize,
            world.CommunicationTime - communication, GradientAllReduce.TotalTime - gradients, clock.Elapsed));

        // 5. Save and report.
        string final = Path.Combine(run, "final");
        if (world.IsMain) LanguageModelFolder.Save(final, model, baseModel, options.Method, method, settings, lm.Template?.Text);
        var metrics = new Dictionary<string, double>();
        if (validation.Examples.Count > 0)
        {
            foreach (var (key, value) in objective.Evaluate(validation.Examples, Math.Max(8, options.Training.BatchSize), world)) metrics[key] = value;
            log.Write("final", metrics.ToDictionary(kv => $"eval_{kv.Key}", kv => (object?)kv.Value));
            if (world.IsMain) samples?.OnEvaluate(new EvaluationInfo(state.GlobalStep, state.Epoch, metrics["loss"], metrics, false, "final"));
            say($"validation: loss {metrics["loss"]:F4}, perplexity {metrics["perplexity"]:F2}" +
                (metrics.TryGetValue("rouge_l", out double rouge) ? $", exact match {metrics["exact_match"]:P1}, ROUGE-L {rouge:F3} (samples.jsonl)" : ""));
        }
        if (world.IsMain) CurvesPlot.Save(Path.Combine(run, "curves.png"), log, "perplexity");
        long adapterBytes = method is null || !world.IsMain ? 0 : Directory.EnumerateFiles(Path.Combine(final, LanguageModelFolder.AdapterFolder)).Sum(f => new FileInfo(f).Length);
        return new RunSummary(run, parameters, train.Examples.Count, validation.Examples.Count, skipped.Count, truncated,
            state.GlobalStep, secondsPerStep, FineTuneJob.PeakMemory(), metrics, state.BestMetric, state.BestStep,
            Directory.Exists(saver.Folder) ? saver.Folder : final, adapterBytes);
    }

    /// <summary>The training and validation rows: the --validation file, or a seeded held-out part of --train.</summary>
    (IReadOnlyList<LanguageModelExample> Train, IReadOnlyList<LanguageModelExample> Validation, List<string> Skipped) ReadData()
    {
        var train = LanguageModelData.Read(options.Train!, options.SkipBadRows, options.Format);
        var skipped = train.SkippedRows.ToList();
        if (options.Validation is { } path)
        {
            var validation = LanguageModelData.Read(path, options.SkipBadRows, options.Format);
            skipped.AddRange(validation.SkippedRows);
            return (train.Examples, validation.Examples, skipped);
        }
        if (train.Examples.Count < 2) return (train.Examples, [], skipped);
        var split = DataSplit.TrainValidation(train.Examples, options.ValidationFraction, options.Training.Seed);
        say($"no --validation file: holding out {split.Validation.Count} of {train.Examples.Count} training rows (seed {options.Training.Seed})");
        return (split.Train, split.Validation, skipped);
    }

    /// <summary>
    /// How the frozen base is held, from <c>--base-dtype</c>: auto is stored for a GGUF file under an adapter or prompt
    /// method (the file's blocks, no dense copy) and fp32 otherwise. Methods that train base weights (full, freeze:K,
    /// BitFit) need them dense: stored and bf16 are refused for them, and auto says that a GGUF is dequantized.
    /// </summary>
    static WeightStorage BaseStorage(FineTuneOptions options, string baseModel, IPeftMethod? method, Action<string> say)
    {
        bool trainsBase = method is null or BitFitMethod;
        bool gguf = baseModel.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);
        switch (options.BaseDtype)
        {
            case "stored" or "bf16" when trainsBase:
                throw new ArgumentException($"--base-dtype {options.BaseDtype} needs an adapter or prompt method (lora, ia3, prompt, ptuning, prefix, ptuning-v2); " +
                    $"--method {options.Method} trains base weights themselves: use --base-dtype fp32 (a GGUF's blocks are then dequantized)");
            case "stored" when !gguf:
                throw new ArgumentException($"--base-dtype stored keeps a GGUF file's blocks; {options.Model} is a Hugging Face folder: use fp32 or bf16");
            case "stored":
                return WeightStorage.AsStored;
            case "bf16":
                return ScalarType.BFloat16;
            case "auto" when gguf && !trainsBase:
                say("base held as stored: the GGUF's matrices stay in their blocks, memory-mapped (--base-dtype fp32 or bf16 to change)");
                return WeightStorage.AsStored;
            case "auto" when gguf:
                say($"base dequantized to fp32: --method {options.Method} trains the base's weights themselves");
                return ScalarType.Float32;
            default:
                return ScalarType.Float32;
        }
    }
}

/// <summary>Saves the language model (with the chat template it trains with) whenever validation improves, into the run's <c>best/</c> folder.</summary>
sealed class BestLanguageModelSaver(string folder, string baseModel, string methodName, IPeftMethod? method, PeftSettings settings, string? chatTemplate)
    : ITrainerCallback
{
    public string Folder => folder;

    public void OnNewBest(nn.Module model, EvaluationInfo evaluation) =>
        LanguageModelFolder.Save(folder, (CausalLmModel)model, baseModel, methodName, method, settings, chatTemplate);
}
