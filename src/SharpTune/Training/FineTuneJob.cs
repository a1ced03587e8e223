using System.Diagnostics;
using SharpTune.Checkpoints;
using SharpTune.Distributed;
using SharpTune.Training.Tasks;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>What a finished run reports.</summary>
public sealed record RunSummary(
    string RunFolder, ParameterSummary Parameters, int TrainExamples, int ValidationExamples, int SkippedRows, int Truncated,
    long Steps, double SecondsPerStep, long PeakMemoryBytes, IReadOnlyDictionary<string, double> FinalMetrics, double? BestMetric,
    long? BestStep, string BestModelFolder, long AdapterBytes);

/// <summary>
/// A complete fine-tuning run, from files to a saved model, whatever the task: the task's recipe (from
/// <see cref="TaskRegistry"/>) builds the model and reads the data; this job does what every run does, in this order:
/// the run folder and its lock, threads and seeds, the checks that every process of a data-parallel job runs the same
/// thing from the same start, run_config.json, the log, training with evaluation and checkpoints, the best and final
/// models, the final metrics, the curves and the summary.
/// </summary>
public sealed class FineTuneJob(FineTuneOptions options, Action<string> say, IReadOnlyList<ITrainerCallback>? progress = null)
{
    /// <param name="cancel">Stops training after the step under way, with a checkpoint (<see cref="TrainingInterruptedException"/>).</param>
    public RunSummary Run(CancellationToken cancel = default)
    {
        options.Validate();
        using var recipe = TaskRegistry.Get(options.Task).CreateRecipe(options);
        return recipe.RunIn(this, cancel);
    }

    internal RunSummary Run<TExample>(RunRecipe<TExample> recipe, CancellationToken cancel)
    {
        var world = World.Current;   // one process, or one rank of an MPI job; rank 0 alone writes
        string run = Path.GetFullPath(options.Out);
        using var runLock = world.IsMain ? RunFolderLock.Acquire(run) : null;   // one process trains in a folder at a time
        if (!options.Resume && Directory.Exists(Path.Combine(run, "checkpoints")))
            throw new ArgumentException($"{run} already holds a run; use --resume to continue it or choose another --out");
        int threads = DataParallelJob.ConfigureThreads(options.Threads, world);
        if (DataParallelJob.Describe(world, threads, options.Training.BatchSize) is { } description) say(description);
        var context = new RunContext(options, run, world, say);
        context.Seed();

        // 1. The recipe: every check that needs the model, the model with its method, the data.
        var plan = recipe.Prepare(context);
        var model = plan.Objective.Model;
        DataParallelJob.CheckSameRun(world, new Dictionary<string, string>(plan.SameRunFacts)
        {
            ["its options"] = DataParallelJob.TextHash(RunConfig.ToJson(options)), ["the --train file"] = DataParallelJob.FileHash(options.Train),
            ["the --validation file"] = DataParallelJob.FileHash(options.Validation),
        });
        DataParallelJob.BroadcastTrainable(world, model);   // every rank starts from rank 0's initial trainable weights

        // 2. The run folder's description of the run.
        Directory.CreateDirectory(run);
        context.ListSkipped(plan.Skipped);
        if (world.IsMain)
        {
            AtomicFile.WriteAllText(Path.Combine(run, RunConfig.FileName), RunConfig.ToJson(plan.Resolved) + "\n");
            recipe.WriteRunFiles(run);
        }

        // 3. Train.
        using var log = world.IsMain ? new RunLog(Path.Combine(run, "metrics.jsonl"), append: options.Resume) : new RunLog(TextWriter.Null);
        var best = new BestModelSaver(Path.Combine(run, "best"), recipe.SaveModel);
        var callbacks = new List<ITrainerCallback> { log, best };
        callbacks.AddRange(recipe.Callbacks(run));
        callbacks.AddRange(progress ?? []);
        var trainer = new Trainer<TExample>(plan.Objective, options.Training, callbacks);
        var clock = Stopwatch.StartNew();
        var (communication, gradients) = (world.CommunicationTime, GradientAllReduce.TotalTime);
        var state = trainer.Train(plan.Train, plan.Validation, new TrainingCheckpoint(run), options.Resume, cancel);
        double secondsPerStep = clock.Elapsed.TotalSeconds / Math.Max(1, state.GlobalStep);
        if (world.Size > 1) log.Write("data_parallel", DataParallelJob.Report(world, threads, options.Training.BatchSize,
            world.CommunicationTime - communication, GradientAllReduce.TotalTime - gradients, clock.Elapsed));

        // 4. Save and report.
        string final = Path.Combine(run, "final");
        if (world.IsMain) recipe.SaveModel(final);
        var metrics = new Dictionary<string, double>();
        if (plan.Validation.Count > 0)
        {
            foreach (var (key, value) in plan.Objective.Evaluate(plan.Validation, Trainer<TExample>.EvaluationBatchSize(options.Training), world))
                metrics[key] = value;
            log.Write("final", metrics.ToDictionary(kv => $"eval_{kv.Key}", kv => (object?)kv.Value));
            recipe.ReportFinal(context, metrics, state);
        }
        if (world.IsMain) CurvesPlot.Save(Path.Combine(run, "curves.png"), log, recipe.CurveMetric ?? plan.Objective.Metric);
        long adapterBytes = recipe.AdapterFolder is { } adapter && world.IsMain ? DirectorySize(Path.Combine(final, adapter)) : 0;
        return new RunSummary(run, plan.Parameters, plan.TrainExamples, plan.Validation.Count, plan.Skipped.Count, plan.Truncated,
            state.GlobalStep, secondsPerStep, PeakMemory(), metrics, state.BestMetric, state.BestStep,
            Directory.Exists(best.Folder) ? best.Folder : final, adapterBytes);
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
sealed class BestModelSaver(string folder, Action<string> save) : ITrainerCallback
{
    public string Folder => folder;

    public void OnNewBest(nn.Module model, EvaluationInfo evaluation) => save(folder);
}
