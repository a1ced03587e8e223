using System.Diagnostics;
using System.Text.Json.Nodes;
using SharpTune.Bench.Reporting;
using SharpTune.Models;
using SharpTune.Models.Decoders;
using SharpTune.Native;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Heads;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Quantized;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>One way of training the decoder: which weights train, in which dtype the frozen ones are held, and what saves memory.</summary>
/// <param name="Key">The suite name's suffix and the metrics' prefix.</param>
/// <param name="Lora">LoRA r 8, alpha 16 on q, k, v, o, gate, up, down (only the adapters train); false: full fine-tuning.</param>
/// <param name="Bf16Base">The frozen weights held in bf16 (<see cref="MixedDtype"/>); the adapters stay fp32.</param>
/// <param name="Checkpointing">Each decoder layer recomputed in the backward pass (<see cref="IGradientCheckpointing"/>).</param>
/// <param name="ChunkedLoss">The head and the loss over chunks of tokens (<see cref="CausalLmLoss"/>); false: full (B, T, V) fp32 logits.</param>
/// <param name="NeedsGigabytes">What the configuration is expected to take at the full shape; it is skipped when the
/// machine has less available (a shared machine), with a note.</param>
/// <param name="ReturnFreedMemory">glibc's malloc with its mmap threshold fixed at 128 KiB (<see cref="GlibcHeap.ReturnFreedBlocks"/>; the
/// child runs with <c>SHARPTUNE_ALLOCATOR=system</c>); false: the allocator the CLI runs on (<see cref="NativeAllocator"/>).</param>
/// <param name="Gguf">The base read from a GGUF file as <c>sharptune train</c> reads it (null: random weights built in memory).</param>
/// <param name="Batch">Rows of a step.</param>
/// <param name="Length">Tokens of a row.</param>
/// <param name="Steps">Steps run, the first a warm-up (one: that step is the figure).</param>
/// <param name="Bf16Compute">Over a stored base: activations in bf16 (<c>--precision bf16</c>, <see cref="QuantizedOps.ComputeInBf16"/>).</param>
public sealed record DecoderStepConfig(string Key, string Label, bool Lora, bool Bf16Base, bool Checkpointing, bool ChunkedLoss, double NeedsGigabytes,
    bool ReturnFreedMemory = false, GgufBase? Gguf = null, int Batch = DecoderTrainingStepSuite.Batch, int Length = DecoderTrainingStepSuite.Length, int Steps = 2,
    bool Bf16Compute = false);

/// <summary>
/// A base read from a GGUF file: <paramref name="File"/> makes (or finds) it and gives its path, <paramref name="Shape"/>
/// its shapes (both by --quick). <paramref name="Stored"/>: its matrices kept in their blocks (<c>--base-dtype stored</c>);
/// false: read into the config's dtype (bf16 with <see cref="DecoderStepConfig.Bf16Base"/>: <c>--base-dtype bf16</c>).
/// </summary>
public sealed record GgufBase(Func<bool, string> File, Func<bool, Qwen2Shape> Shape, bool Stored);

/// <summary>
/// One configuration of the decoder-memory suite, run alone in its own process (peak resident memory is per process):
/// builds the Qwen2.5-0.5B-shaped model with random weights, then times training steps (forward, loss, backward, AdamW
/// step, zero-grad) at batch 4 x 512 tokens and reads the process's peak resident set (VmHWM) before and during them.
/// </summary>
public sealed class DecoderTrainingStepSuite(DecoderStepConfig config) : IBenchSuite
{
    public const int Threads = 2, Batch = 4, Length = 512;
    public const string Prefix = "decoder-memory-";

    static readonly string[] LoraTargets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    public DecoderStepConfig Config => config;

    public string Name => Prefix + config.Key;

    public string Description => $"one process: {config.Label}, training steps at {config.Batch} x {config.Length} tokens (part of decoder-memory)";

    public BenchResult Run(BenchContext context)
    {
        var mkl = MklDispatch.Ensure();
        set_num_threads(Threads);
        var shape = config.Gguf?.Shape(context.Quick) ?? (context.Quick ? Qwen2Shape.Quick : Qwen2Shape.Qwen25_05B);
        int steps = config.Steps, batch = config.Batch, length = config.Length;
        var clock = Stopwatch.StartNew();
        string allocator = config.ReturnFreedMemory ? GlibcHeap.ReturnFreedBlocks() : NativeAllocator.Status.Reason;
        Console.WriteLine($"CPU {mkl.Cpu}; {Threads} threads; {config.Label}; {shape.Name}; memory: {allocator}");

        string? file = config.Gguf?.File(context.Quick);
        Memory.ResetPeak();
        double baselineMb = Memory.ResidentMb();                                 // the runtime and libtorch, before any weight
        manual_seed(2026);
        using var built = file is null ? Build(shape) : Load(file, config.Gguf!.Stored);
        var model = built.Model;
        var trainable = model.Module.parameters().Where(p => p.requires_grad).ToList();
        long trainableCount = trainable.Sum(p => p.numel());
        double weightsMb = model.Module.parameters().Sum(p => p.numel() * p.element_size()) / 1e6;
        using var optimizer = optim.AdamW(trainable, lr: config.Lora ? 5e-4 : 1e-5);
        var head = (ILanguageModelHead)model;
        double buildPeakMb = Memory.PeakMb(), builtMb = Memory.ResidentMb();
        bool reset = Memory.ResetPeak();
        Console.WriteLine($"built in {clock.Elapsed.TotalSeconds:F0} s: {weightsMb:F0} MB of weights, {trainableCount:N0} trainable parameters; " +
                          $"resident {builtMb:F0} MB, peak so far {buildPeakMb:F0} MB");

        using var ids = randint(3, shape.Vocab, [batch, length], dtype: ScalarType.Int64);
        using var mask = ones_like(ids);
        var seconds = new List<double>();
        var cpuSeconds = new List<double>();
        double loss = 0;
        using var self = Process.GetCurrentProcess();
        for (int step = 0; step < steps; step++)
        {
            self.Refresh();
            var cpu = self.TotalProcessorTime;
            var watch = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            {
                var l = built.Wrapper is { } wrapper ? wrapper.Loss(ids, mask, ids)      // as the trainer computes it (the chunked head and loss)
                    : config.ChunkedLoss
                    ? CausalLmLoss.Compute(head.ForwardHidden(model.EmbedTokens(ids)), head.HeadWeight, head.HeadBias, ids)
                    : FullLogitsLoss(model, ids);
                l.backward();
                loss = l.item<float>();
            }
            optimizer.step();
            optimizer.zero_grad();
            seconds.Add(watch.Elapsed.TotalSeconds);
            self.Refresh();
            cpuSeconds.Add((self.TotalProcessorTime - cpu).TotalSeconds);
            Console.WriteLine($"  step {step}: {seconds[^1]:F1} s ({cpuSeconds[^1]:F1} s of CPU), loss {loss:F3}, resident {Memory.ResidentMb():F0} MB, peak {Memory.PeakMb():F0} MB");
        }
        int skip = steps > 1 ? 1 : 0;
        double stepSeconds = seconds.Skip(skip).Min();
        double flops = StepFlops(shape);
        var metrics = new OrderedDictionary<string, double>
        {
            ["step_seconds"] = stepSeconds,
            // On a shared machine a step's wall time depends on the other processes; the CPU time it used much less.
            ["step_cpu_seconds"] = cpuSeconds.Skip(skip).Min(),
            ["first_step_seconds"] = seconds[0],
            ["tokens_per_s"] = batch * length / stepSeconds,
            ["step_flops"] = flops,
            ["flops_per_s"] = flops / stepSeconds,
            ["peak_resident_mb"] = Math.Max(buildPeakMb, Memory.PeakMb()),
            ["build_peak_resident_mb"] = buildPeakMb,
            ["resident_after_build_mb"] = builtMb,
            ["baseline_resident_mb"] = baselineMb,
            ["weights_mb"] = weightsMb,
            ["trainable_parameters"] = trainableCount,
            ["loss"] = loss,
        };
        // Only where measured: JSON has no NaN.
        if (reset) metrics.Insert(metrics.IndexOf("build_peak_resident_mb"), "training_peak_resident_mb", Memory.PeakMb()); // since the model and the optimizer were built
        if (file is not null) metrics.Insert(metrics.IndexOf("weights_mb"), "file_mb", new FileInfo(file).Length / 1e6);
        return new BenchResult
        {
            Suite = Name,
            Model = $"qwen2 with {shape.Name} ({shape.Parameters:N0} parameters, random weights{(file is null ? "" : ", " + file)}), {config.Label}" +
                    $"{(config.Gguf?.Stored == true ? $" (tiles {QuantizedOps.TileDtype}, activations {(config.Bf16Compute ? "bf16" : "fp32")})" : "")}; {Threads} threads; CPU {mkl.Cpu}; load {DecoderSpeedSuite.Load()}",
            Dataset = $"random token ids, batch {batch} x {length}, labels = inputs; {steps} step(s){(steps > 1 ? ", the first a warm-up" : "")}",
            Quick = context.Quick,
            TrainExamples = steps * batch,
            TestExamples = 0,
            TrainSeconds = seconds.Sum(),
            PredictSeconds = 0,
            Metrics = metrics,
        };
    }

    /// <summary>
    /// The products a step executes, counted from the shapes (2 FLOPs a multiply-add): per token, the forward pass's
    /// Linear layers (the head over the T-1 labelled positions only) and attention's two products (4·T·d a layer, the full
    /// T x T square, as the kernel computes it); the backward pass's products for the inputs (the same again, attention
    /// twice); for the weights only where they train (full fine-tuning; LoRA's rank-8 products are left out); and one
    /// more forward through the layers when they are recomputed. The head is never recomputed.
    /// </summary>
    public double StepFlops(Qwen2Shape shape)
    {
        double d = shape.Hidden, kv = shape.KeyValueHeads * shape.HeadDim, q = shape.Heads * shape.HeadDim;
        double layerWeights = d * q + 2 * d * kv + q * d + 3 * d * shape.Intermediate;        // q, k, v, o, gate, up, down
        int batch = config.Batch, length = config.Length;
        double tokens = (double)batch * length, labelled = batch * (length - 1.0);
        double layersForward = shape.Layers * (2 * layerWeights * tokens + 4 * q * length * tokens);
        double headForward = 2 * d * shape.Vocab * labelled;
        double layersInputGrad = shape.Layers * (2 * layerWeights * tokens + 8 * q * length * tokens);
        double weightGrads = config.Lora ? 0 : shape.Layers * 2 * layerWeights * tokens + headForward;
        return layersForward * (config.Checkpointing ? 2 : 1) + 2 * headForward + layersInputGrad + weightGrads;
    }

    /// <summary>The model a step trains; <paramref name="Wrapper"/>, when set, computes the loss as the trainer does; <paramref name="Owner"/> is disposed with it.</summary>
    sealed record Built(ICausalLanguageModel Model, CausalLmModel? Wrapper, IDisposable? Owner) : IDisposable
    {
        public void Dispose()
        {
            if (Owner is not null) Owner.Dispose();                          // the LanguageModel: its model and its mapped weights
            else Model.Module.Dispose();
        }
    }

    /// <summary>As <c>sharptune train --method lora --base-dtype stored|bf16</c> loads a GGUF base (CausalLmJob): LoRA built in, only the adapters train.</summary>
    Built Load(string file, bool stored)
    {
        var lora = PeftRegistry.Get("lora");
        var settings = new PeftSettings { LoraR = 8, LoraAlpha = 16, LoraDropout = 0, LoraTargets = [LinearTargets.AllLinear] };
        var shape = (IBackboneShape)LanguageModel.ReadConfig(file);
        var lm = LanguageModel.Load(file, stored ? WeightStorage.AsStored : config.Bf16Base ? ScalarType.BFloat16 : ScalarType.Float32,
            linears: lora.Linears(settings, shape, DecoderLinears.Plain));
        var wrapper = new CausalLmModel(lm.Model, null);
        lora.Freeze(wrapper, settings);
        if (!stored && config.Bf16Base) MixedDtype.Convert(wrapper, ScalarType.Float32, (_, p) => p.requires_grad);
        if (stored && config.Bf16Compute) QuantizedOps.ComputeInBf16(wrapper);  // --precision bf16: bf16 activations, as over a bf16 base
        wrapper.train();
        ((IGradientCheckpointing)lm.Model).GradientCheckpointing = config.Checkpointing;
        return new Built(lm.Model, wrapper, lm);
    }

    Built Build(Qwen2Shape shape) => new(BuildRandom(shape), null, null);

    ICausalLanguageModel BuildRandom(Qwen2Shape shape)
    {
        var json = new JsonObject
        {
            ["model_type"] = "qwen2", ["vocab_size"] = shape.Vocab, ["hidden_size"] = shape.Hidden, ["intermediate_size"] = shape.Intermediate,
            ["num_hidden_layers"] = shape.Layers, ["num_attention_heads"] = shape.Heads, ["num_key_value_heads"] = shape.KeyValueHeads,
            ["max_position_embeddings"] = shape.Context, ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 1000000.0, ["tie_word_embeddings"] = true,
            ["initializer_range"] = 0.02, ["use_sliding_window"] = false,
        };
        var options = new LoraOptions(8, 16, 0, LoraTargets, "none");
        LinearFactory? linears = config.Lora ? site => new LoraLinear(site, options) : null;
        // As `sharptune train --base-dtype bf16` does: the model made in bf16, then what trains given back fp32.
        var model = PretrainedDecoder.Create(json, config.Bf16Base ? ScalarType.BFloat16 : ScalarType.Float32, linears);
        if (config.Lora)
            foreach (var (name, parameter) in model.Module.named_parameters())
                parameter.requires_grad = name.Contains(".lora_", StringComparison.Ordinal);
        if (config.Bf16Base) MixedDtype.Convert(model.Module, ScalarType.Float32, (_, p) => p.requires_grad);
        model.Module.train();
        ((IGradientCheckpointing)model).GradientCheckpointing = config.Checkpointing;
        return model;
    }

    static Tensor FullLogitsLoss(ICausalLanguageModel model, Tensor ids)
    {
        var logits = model.Forward(ids);                                                     // (B, T, V) fp32
        return nn.functional.cross_entropy(logits[.., ..^1].reshape(-1, logits.shape[2]), ids[.., 1..].reshape(-1));
    }
}

/// <summary>This process's resident memory as Linux accounts it (/proc/self/status).</summary>
static class Memory
{
    public static double ResidentMb() => Read("VmRSS:");

    /// <summary>The peak resident set (VmHWM) since the process started or since <see cref="ResetPeak"/>.</summary>
    public static double PeakMb() => Read("VmHWM:");

    /// <summary>Starts the peak over from the current resident set (writing 5 to /proc/self/clear_refs); false where refused.</summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    static double Read(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line[field.Length..].Trim().Split(' ')[0]) * 1024 / 1e6;   // kB
        return double.NaN;
    }
}
