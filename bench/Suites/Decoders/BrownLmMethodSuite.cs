using SharpTune.Bench.Reporting;
using SharpTune.Heads;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;
using SharpTune.Peft;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// One method of the <c>lm</c> suite, in a process of its own so its peak memory is its own: loads the pretrained base
/// (bench/results/lm-base, written by <c>lm</c>) with the method built in, as <c>sharptune train --task causal-lm</c>
/// does, adapts it to the K–R training files for the plan's steps at the method's default learning rate, and scores
/// the K–R test files.
/// </summary>
/// <param name="key">The suite's name is lm-KEY.</param>
/// <param name="method">What <c>--method</c> would say: full, freeze:K (K from the plan when null), or a PEFT method's name.</param>
/// <param name="settings">The method's options; null: the library's defaults.</param>
/// <param name="learningRate">Null: the method's default (<see cref="TrainingMethods.LearningRateFor"/>).</param>
/// <param name="training">Training options the method adds (LoRA+'s ratio); null: none.</param>
public sealed class BrownLmMethodSuite(string key, string? method, PeftSettings? settings = null, string? detail = null, double? learningRate = null,
    Func<TrainingOptions, TrainingOptions>? training = null) : IBenchSuite
{
    public string Key => key;

    public string Name => $"lm-{key}";

    public string Description => $"one method of lm: {MethodName(BrownLmPlan.Full)} adapting the Brown base to K–R (run lm first)";

    /// <summary>What <c>--method</c> says for this run.</summary>
    public string MethodName(BrownLmPlan plan) => method ?? $"freeze:{plan.FrozenLayers}";

    /// <summary>The method's options in words, for the report.</summary>
    public string Detail => detail ?? "";

    public BenchResult Run(BenchContext context)
    {
        Console.WriteLine($"memory: {GlibcHeap.KeepFreedMemory()}");
        var plan = BrownLmPlan.For(context.Quick);
        string baseFolder = BrownLmBase.Folder(context);
        if (!File.Exists(System.IO.Path.Combine(baseFolder, BrownLmBase.RecordFile)))
            throw new MissingDataException($"{System.IO.Path.GetRelativePath(context.RepoRoot, baseFolder)} holds no pretrained base: run the lm suite first{(context.Quick ? " (with --quick)" : "")}.");
        string name = MethodName(plan);
        var built = Build(baseFolder, plan);
        using var decoder = built.Decoder;
        using var model = built.Model;
        var parameters = ParameterSummary.Of(model);
        Console.WriteLine($"{name}{(Detail.Length > 0 ? $" ({Detail})" : "")}: {parameters}");

        var (train, texts, tokens) = BrownLmData.Rows(BrownLmData.Path(context, "train", informative: false), plan.BlockLength);
        var (test, _, _) = BrownLmData.Rows(BrownLmData.Path(context, "test", informative: false), plan.BlockLength, plan.ImaginativeEvalRows);
        Console.WriteLine($"K–R training files: {texts:N0} texts, {tokens:N0} tokens, {train.Count:N0} rows; {plan.AdaptSteps} steps of {plan.AdaptBatch} rows");
        var trainingOptions = TrainingOptions(plan, context.Quick);
        double rate = trainingOptions.LearningRate;
        var measure = BrownLmTraining.Train(model, train, trainingOptions, name);
        var score = BrownLmTraining.Evaluate(model, test);
        Console.WriteLine($"held-out K–R after {name}: perplexity {score.Perplexity:F2} over {score.Tokens:N0} tokens");

        var metrics = new OrderedDictionary<string, double>
        {
            ["perplexity"] = score.Perplexity,
            ["loss"] = score.Loss,
            ["trainable_parameters"] = parameters.Trainable,
            ["total_parameters"] = parameters.Total,
            ["trainable_fraction"] = parameters.Fraction,
            ["learning_rate"] = rate,
            ["steps"] = measure.Steps,
            ["train_tokens"] = measure.Tokens,
            ["seconds_per_step"] = measure.SecondsPerStep,
            ["cpu_seconds_per_step"] = measure.CpuSecondsPerStep,
            ["tokens_per_second"] = measure.TokensPerSecond,
            ["load_average"] = measure.LoadAverage,
            ["peak_memory_mib"] = measure.PeakMemoryBytes / (1024.0 * 1024.0),
            ["first_logged_loss"] = measure.FirstLoss,
            ["last_logged_loss"] = measure.LastLoss,
        };
        foreach (var (step, loss) in measure.Curve) metrics[$"loss_at_step_{step}"] = loss;
        return new BenchResult
        {
            Suite = Name,
            Model = $"the lm suite's Brown base adapted with {name}{(Detail.Length > 0 ? $" ({Detail})" : "")}, {measure.Steps} steps of {plan.AdaptBatch} x {plan.BlockLength} tokens, AdamW lr {rate:G3}{(learningRate is null ? " (the method's default)" : "")}, linear schedule",
            Dataset = "Brown imaginative prose (K–R): training files, then the held-out files (data/brown-text)",
            Quick = context.Quick,
            TrainExamples = train.Count,
            TestExamples = test.Count,
            TrainSeconds = measure.Seconds,
            PredictSeconds = score.Seconds,
            Metrics = metrics,
        };
    }

    /// <summary>
    /// The base at <paramref name="baseFolder"/> with the method built in, as <c>sharptune train --task causal-lm</c> builds
    /// it (the method's Linear layers in the model, its prompt module, then what trains); dispose both.
    /// </summary>
    public (IDisposable Decoder, CausalLmModel Model) Build(string baseFolder, BrownLmPlan plan)
    {
        string name = MethodName(plan);
        var peft = PeftRegistry.TryGet(name, out var found) ? found : null;
        var freeze = peft is null ? FreezePolicy.Parse(name) : null;
        var options = settings ?? new PeftSettings();
        var shape = LanguageModel.ReadConfig(baseFolder);
        peft?.Validate(options, shape);
        var decoder = PretrainedDecoder.Load(baseFolder, ScalarType.Float32, peft?.Linears(options, shape, DecoderLinears.Plain));
        manual_seed(BrownLmPlan.Seed);
        var prompt = peft?.CreatePromptEncoder(options, shape, decoder.WordEmbeddings);
        var model = new CausalLmModel(decoder, prompt);
        if (peft is not null) peft.Freeze(model, options); else freeze!.Apply(model);
        return (decoder, model);
    }

    /// <summary>The training options of the run: the plan's steps and batch at the method's rate, with what the method adds.</summary>
    public TrainingOptions TrainingOptions(BrownLmPlan plan, bool quick)
    {
        var options = new TrainingOptions
        {
            MaxSteps = plan.AdaptSteps, BatchSize = plan.AdaptBatch, LearningRate = learningRate ?? TrainingMethods.LearningRateFor(MethodName(plan)),
            Seed = BrownLmPlan.Seed, LogEverySteps = quick ? 2 : plan.AdaptSteps <= 50 ? 5 : 10,
        };
        return training is null ? options : training(options).Validate();
    }
}
