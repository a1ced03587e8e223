using SharpTune.Checkpoints;
using SharpTune.Models;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Memory;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// Whether a run fits the machine, asked once before anything large is allocated or written: the memory of a training
/// step (weights, gradients, optimizer state, activations, the loss's logits; <see cref="MemoryEstimator"/>) against what
/// is available, and the room a checkpoint and the saved models need against the run folder's free disk space. A run
/// that would not fit is refused with the options that would make it fit.
/// </summary>
public static class RunResources
{
    /// <summary>
    /// Refuses the run (<see cref="NotEnoughMemoryException"/>, <see cref="DiskFullException"/>) when it will not fit;
    /// otherwise tells <paramref name="say"/> the estimate. <paramref name="weightBytes"/> gives the base's weights in a
    /// dtype (from a GGUF header or the config); <paramref name="baseDtype"/> is the dtype the base is held in;
    /// <paramref name="writes"/>: this process writes the run folder (rank 0); <paramref name="available"/>: the machine's, unless given.
    /// </summary>
    public static void Check(FineTuneOptions options, IBackboneShape shape, Func<ScalarType, long> weightBytes, ScalarType baseDtype,
        IPeftMethod? method, FreezePolicy? freeze, int maxLength, bool writes, Action<string> say, MemoryAvailability? available = null)
    {
        var known = new Dictionary<ScalarType, long>();
        var given = weightBytes;
        weightBytes = dtype => known.TryGetValue(dtype, out long bytes) ? bytes : known[dtype] = given(dtype);   // a GGUF header is read once per dtype
        var estimate = Estimate(options, shape, weightBytes, baseDtype, method, freeze, maxLength);
        available ??= AvailableMemory.Current();
        estimate.EnsureFits(available, $"training {options.Model} with --method {options.Method} at --batch-size {options.Training.BatchSize} " +
            $"x --max-length {maxLength}", Remedies(options, shape, weightBytes, baseDtype, method, freeze, maxLength, estimate, available));
        say($"memory: about {ByteSize.Format(estimate.Total)} for a training step ({estimate}); {available}");
        if (SharpTune.Native.NativeAllocator.Advice is { } advice) say($"note: {advice}");
        if (!writes) return;
        var (needed, what) = DiskNeeded(options, shape, method, freeze);
        DiskSpace.Require(options.Out, needed, what);
    }

    /// <summary>The memory of a training step with these options.</summary>
    public static MemoryEstimate Estimate(FineTuneOptions options, IBackboneShape shape, Func<ScalarType, long> weightBytes, ScalarType baseDtype,
        IPeftMethod? method, FreezePolicy? freeze, int maxLength)
    {
        var load = new TrainingLoad(
            TrainableParameters(shape, method, freeze, options.Peft), TrainableAreExtra: method is { TrainsBaseWeights: false },
            OptimizerStates(options.Training), options.Training.BatchSize, maxLength + (method?.PositionsTaken(options.Peft, shape) ?? 0),
            options.GradientCheckpointing, ChunkedLoss: method is not { AddsVirtualTokens: true }, BaseTrains: method is null);
        return MemoryEstimator.Training(shape, weightBytes(baseDtype), baseDtype, load);
    }

    /// <summary>
    /// A LoRA step with the method's defaults (r 8, the family's default targets, AdamW) at <paramref name="batch"/> x
    /// <paramref name="length"/> tokens, over an fp32 base or, <paramref name="saving"/>, a bf16 base with checkpointing:
    /// what <c>sharptune info</c> shows.
    /// </summary>
    public static MemoryEstimate LoraStep(IBackboneShape shape, Func<ScalarType, long> weightBytes, int batch, int length, bool saving)
    {
        PeftRegistry.TryGet("lora", out var lora);
        var options = new FineTuneOptions
        {
            Task = shape is IDecoderConfig ? "causal-lm" : "classify", Method = "lora", BaseDtype = saving ? "bf16" : "fp32",
            GradientCheckpointing = saving && shape is IDecoderConfig, Training = new TrainingOptions { BatchSize = batch },
        };
        return Estimate(options, shape, weightBytes, saving ? ScalarType.BFloat16 : ScalarType.Float32, lora, null, length);
    }

    /// <summary>fp32 values the optimizer keeps per trained parameter.</summary>
    static int OptimizerStates(TrainingOptions training) => training.Optimizer.ToLowerInvariant() switch
    {
        "sgd" => training.Momentum > 0 ? 1 : 0,
        _ => 2,   // Adam and AdamW: the first and second moments
    };

    /// <summary>Parameters that train under the method, counted from the shape (what <c>ParameterSummary</c> reports once the model is built).</summary>
    public static long TrainableParameters(IBackboneShape shape, IPeftMethod? method, FreezePolicy? freeze, PeftSettings settings)
    {
        if (method is not null) return method.TrainableParameters(settings, shape);
        long h = shape.HiddenSize, layers = shape.LayerCount;
        long all = MemoryEstimator.ParameterCount(shape);
        long embeddings = ((long)shape.Vocabulary + shape.LearnedPositions) * h;
        return freeze?.What switch
        {
            FreezePolicy.Mode.Encoder => h * 16,   // the task head alone
            FreezePolicy.Mode.Embeddings => all - embeddings,
            FreezePolicy.Mode.BottomLayers => all - embeddings - freeze.Layers * (all - embeddings) / Math.Max(1, layers),
            _ => all,
        };
    }

    /// <summary>
    /// The disk a run needs: a checkpoint (the trained weights and the optimizer's state) written beside the previous one
    /// before that is removed, and the best and final models (the adapter, or the whole model). Resuming, the old ones are there already.
    /// </summary>
    public static (long Bytes, string What) DiskNeeded(FineTuneOptions options, IBackboneShape shape, IPeftMethod? method, FreezePolicy? freeze)
    {
        long trainable = TrainableParameters(shape, method, freeze, options.Peft);
        long checkpoint = trainable * 4 * (1 + OptimizerStates(options.Training));
        long model = (method is null ? MemoryEstimator.ParameterCount(shape) : trainable) * 4;
        int copies = options.Resume ? 1 : 2;
        long needed = copies * (checkpoint + model);
        return (needed, $"the run folder {Path.GetFullPath(options.Out)}: a checkpoint of {ByteSize.Format(checkpoint)} (the trained weights and the " +
            $"optimizer's state) and a saved model of {ByteSize.Format(model)} ({(method is null ? "the whole model" : "the adapter")}), " +
            (options.Resume ? "each written beside the old one" : "two of each (a new checkpoint is written before the old one goes; best/ and final/)"));
    }

    /// <summary>The options that would make the run fit, each with the estimate it gives.</summary>
    static List<string> Remedies(FineTuneOptions options, IBackboneShape shape, Func<ScalarType, long> weightBytes, ScalarType baseDtype,
        IPeftMethod? method, FreezePolicy? freeze, int maxLength, MemoryEstimate current, MemoryAvailability available)
    {
        var remedies = new List<string>();
        void Try(string change, FineTuneOptions changed, ScalarType dtype, IPeftMethod? m, FreezePolicy? f, int length)
        {
            long total = Estimate(changed, shape, weightBytes, dtype, m, f, length).Total;
            if (total < current.Total)
                remedies.Add($"{change} (about {ByteSize.Format(total)}{(total <= available.Bytes ? "" : ", still too much alone")})");
        }
        bool decoder = shape is IDecoderConfig;
        if (decoder && baseDtype == ScalarType.Float32 && method is not null and not Peft.BitFit.BitFitMethod)
            Try("--base-dtype bf16", options with { BaseDtype = "bf16" }, ScalarType.BFloat16, method, freeze, maxLength);
        if (decoder && !options.GradientCheckpointing)
            Try("--gradient-checkpointing", options with { GradientCheckpointing = true }, baseDtype, method, freeze, maxLength);
        if (options.Training.BatchSize > 1)
        {
            int half = options.Training.BatchSize / 2;
            Try($"--batch-size {half} with --grad-accum {options.Training.GradientAccumulation * 2} (the same effective batch)",
                options with { Training = options.Training with { BatchSize = half } }, baseDtype, method, freeze, maxLength);
        }
        if (maxLength > 64) Try($"--max-length {maxLength / 2}", options, baseDtype, method, freeze, maxLength / 2);
        if (method is null && PeftRegistry.TryGet("lora", out var lora))
        {
            var settings = decoder ? "--method lora --base-dtype bf16" : "--method lora";
            Try(settings, options with { Method = "lora", BaseDtype = decoder ? "bf16" : options.BaseDtype }, decoder ? ScalarType.BFloat16 : baseDtype, lora, null, maxLength);
        }
        return remedies;
    }
}
