using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SharpTune.Bench.Reporting;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Native;
using SharpTune.Peft;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites;

/// <summary>
/// Throughput against the peers and the machine, measured side by side in one process with the same
/// threads: the fp32 matrix-product ceiling measured with libtorch and with ONNX Runtime's MatMul (every fp32
/// fraction is stated against the higher of the two), the bf16 ceiling (libtorch), minilm inference in
/// SharpTune against ONNX Runtime on the same ONNX file and batches, and full fine-tuning throughput as
/// achieved FLOP/s over the fp32 ceiling. FLOPs of a training step: 6 x non-embedding parameters per token
/// (forward 2, backward 4) plus the attention products, 3 x (4 T^2 H) per layer and sequence.
/// </summary>
public sealed class SpeedSuite : IBenchSuite
{
    /// <summary>The methods whose step time is compared with full fine-tuning's: those whose backbone is frozen.</summary>
    static readonly string[] PeftStepMethods = ["lora", "ia3", "prefix", "ptuning-v2", "prompt"];

    public string Name => "speed";

    public string Description => "matmul ceiling, minilm inference vs ONNX Runtime, training FLOP/s (no data needed)";

    public BenchResult Run(BenchContext context)
    {
        var mkl = MklDispatch.Ensure();
        Console.WriteLine($"CPU {mkl.Cpu}; MKL override {mkl.Reason}");
        int threads = Environment.ProcessorCount;
        set_num_threads(threads);
        int length = 128;
        int[] batches = context.Quick ? [8] : [1, 8, 32];
        int repeats = context.Quick ? 2 : 5;
        // Ratios come from many rounds in turns, quick or not: one quick run must give the same yes or no as the full suite.
        const int InferenceRounds = 15, StepRounds = 5;
        var metrics = new OrderedDictionary<string, double>();
        metrics["load_average_at_start"] = Timing.LoadAverage();

        int size = context.Quick ? 1024 : 2048;
        var ceiling = MatmulCeiling.MeasureFp32(size, threads, repeats);
        double fp32 = ceiling.Best;
        double bf16 = MatmulFlops(size, ScalarType.BFloat16, repeats);
        ReportCeilings();

        using var encoder = PretrainedEncoder.Load("minilm");
        var model = encoder.Model;
        using var session = new InferenceSession(BuiltInModels.MiniLM.ReadOnnx(), new SessionOptions
        {
            IntraOpNumThreads = threads, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        });
        foreach (int batch in batches)
        {
            manual_seed(batch);
            using var ids = randint(1000, 29000, [batch, length], dtype: ScalarType.Int64);
            using var mask = ones(batch, length, ScalarType.Int64);
            using var types = zeros(batch, length, ScalarType.Int64);
            model.eval();
            void Forward()
            {
                using var mode = inference_mode();
                using var output = model.forward(ids, mask, types);
            }
            var dims = new[] { batch, length };
            var feeds = new List<NamedOnnxValue>
            {
                NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(ids.data<long>().ToArray(), dims)),
                NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(mask.data<long>().ToArray(), dims)),
                NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(types.data<long>().ToArray(), dims)),
            };
            // SharpTune and ONNX Runtime in turns, so a slow moment of the machine falls on both alike; the ratio is taken
            // within each round and the median of the rounds reported, with its spread.
            var times = Timing.InTurns(InferenceRounds, 3, Forward, () => { using var results = session.Run(feeds); });
            metrics[$"infer_b{batch}_sharptune_tokens_per_s"] = batch * length / times.Best(0);
            metrics[$"infer_b{batch}_onnxruntime_tokens_per_s"] = batch * length / times.Best(1);
            var ratio = times.Ratio(1, 0);
            ratio.Report(metrics, $"infer_b{batch}_ratio_vs_onnxruntime");
            Console.WriteLine($"inference, batch {batch}: SharpTune against ONNX Runtime {ratio}");
        }

        if (batches.Length > 1) PlotThroughput(context, batches, metrics);

        // Training steps as the trainer does them: collate, forward, loss, backward, clip, AdamW, zero.
        int trainBatch = context.Quick ? 8 : 32;
        int stepRepeats = context.Quick ? 2 : 3;
        var head = new HeadOptions(TaskKind.SingleLabel, 2);
        using var task = TaskModelBuilder.Build(encoder, head);
        var fullStep = new TaskModelStep(task, trainBatch, length);
        double step;

        // bf16 mixed precision: the same step with bf16 matrix products and attention over fp32 master weights, in turns with fp32.
        using (var mixed = TaskModelBuilder.Build(encoder, head, bf16: true))
        {
            var steps = Timing.InTurns(StepRounds, 1, fullStep.RunStep, new TaskModelStep(mixed, trainBatch, length).RunStep);
            step = steps.Best(0);
            metrics[$"train_b{trainBatch}_bf16_seconds_per_step"] = steps.Best(1);
            var speedup = steps.Ratio(0, 1);
            speedup.Report(metrics, $"train_b{trainBatch}_bf16_speedup_over_fp32");
            Console.WriteLine($"training step, batch {trainBatch}: bf16 against fp32 {speedup}");
            mixed.eval();
            task.eval();
            using var ids = randint(1000, 29000, [trainBatch, length], dtype: ScalarType.Int64);
            var inputs = new ModelInputs(ids, ones(trainBatch, length, ScalarType.Int64), zeros(trainBatch, length, ScalarType.Int64));
            var inference = Timing.InTurns(InferenceRounds, 3,
                () => { using var mode = inference_mode(); using var o = task.forward(inputs); },
                () => { using var mode = inference_mode(); using var o = mixed.forward(inputs); });
            metrics[$"infer_b{trainBatch}_bf16_tokens_per_s"] = trainBatch * length / inference.Best(1);
            var inferenceSpeedup = inference.Ratio(0, 1);
            inferenceSpeedup.Report(metrics, $"infer_b{trainBatch}_bf16_speedup_over_fp32");
            Console.WriteLine($"inference, batch {trainBatch}: bf16 against fp32 {inferenceSpeedup}");
        }

        // Parameter-efficient methods with their default settings: the same step, side by side with full
        // fine-tuning. The methods take turns, one step each per round, so a slow moment of the machine falls
        // on all of them alike; each ratio to full fine-tuning is the median of the rounds' ratios.
        var methods = context.Quick ? PeftStepMethods[..1] : PeftStepMethods;
        var models = methods.Select(name => TaskModelBuilder.Build(encoder, head,
            PeftRegistry.TryGet(name, out var method) ? method : throw new InvalidOperationException($"method {name} is not registered"),
            new PeftSettings())).ToList();
        try
        {
            var steps = new List<TaskModelStep> { fullStep };
            steps.AddRange(models.Select(m => new TaskModelStep(m, trainBatch, length)));
            // The warm-up round builds the optimizer state and makes the first allocations.
            var times = Timing.InTurns(StepRounds, 1, steps.Select(s => (Action)s.RunStep).ToArray());
            metrics[$"train_b{trainBatch}_full_seconds_per_step_interleaved"] = times.Best(0);
            for (int i = 0; i < methods.Length; i++)
            {
                metrics[$"train_b{trainBatch}_{methods[i]}_seconds_per_step"] = times.Best(i + 1);
                var ratio = times.Ratio(i + 1, 0);
                ratio.Report(metrics, $"train_b{trainBatch}_{methods[i]}_step_ratio_vs_full");
                Console.WriteLine($"training step, batch {trainBatch}: {methods[i]} against full fine-tuning {ratio}");
            }
        }
        finally
        {
            foreach (var m in models) m.Dispose();
        }

        // The machine's speed drifts (a shared VM): take the ceilings again now and keep the best, so the fraction
        // below is never flattered by a ceiling measured at a slow moment; the step is the best seen as well.
        ceiling = ceiling.Max(MatmulCeiling.MeasureFp32(size, threads, repeats));
        fp32 = ceiling.Best;
        bf16 = Math.Max(bf16, MatmulFlops(size, ScalarType.BFloat16, repeats));
        ReportCeilings();
        step = Math.Min(step, metrics[$"train_b{trainBatch}_full_seconds_per_step_interleaved"]);

        var config = encoder.Config;
        long nonEmbedding = task.named_parameters().Where(p => !p.name.StartsWith("bert.embeddings.")).Sum(p => p.parameter.numel());
        double tokens = trainBatch * length;
        double flops = 6.0 * nonEmbedding * tokens + 3.0 * config.NumHiddenLayers * trainBatch * 4.0 * length * length * config.HiddenSize;
        metrics[$"train_b{trainBatch}_seconds_per_step"] = step;
        metrics[$"train_b{trainBatch}_tokens_per_s"] = tokens / step;
        metrics[$"train_b{trainBatch}_gflops"] = flops / step / 1e9;
        metrics[$"train_b{trainBatch}_fraction_of_fp32_ceiling"] = flops / step / fp32;

        // Where the time of the full step goes, in fp32 and in bf16 mixed precision.
        task.train();
        Report(TrainingProfile.Measure(config, fullStep, trainBatch, length, stepRepeats), "profile", "fp32", fp32);
        if (!context.Quick)
        {
            using var mixed = TaskModelBuilder.Build(encoder, head, bf16: true);
            var mixedStep = new TaskModelStep(mixed, trainBatch, length);
            Report(TrainingProfile.Measure(config, mixedStep, trainBatch, length, stepRepeats, bf16: true), "profile_bf16", "bf16", bf16);
        }

        // On a machine busier than its cores every engine waits for a core, and not alike: the spreads say how far to trust the ratios.
        metrics["load_average_at_end"] = Timing.LoadAverage();
        double load = Math.Max(metrics["load_average_at_start"], metrics["load_average_at_end"]);
        if (load > threads)
            Console.WriteLine($"\nwarning: load average {load:F1} on {threads} logical cores: the machine was busy, so these ratios are not a quiet machine's");

        void ReportCeilings()
        {
            metrics["matmul_fp32_libtorch_gflops"] = ceiling.LibTorchFlops / 1e9;
            metrics["matmul_fp32_onnxruntime_gflops"] = ceiling.OnnxRuntimeFlops / 1e9;
            metrics["matmul_fp32_gflops"] = fp32 / 1e9;
            metrics["matmul_fp32_libtorch_fraction_of_ceiling"] = ceiling.LibTorchFlops / fp32;
            metrics["matmul_bf16_gflops"] = bf16 / 1e9;
        }

        void Report(List<ProfilePart> profile, string prefix, string precision, double ceiling)
        {
            double whole = profile.Single(p => p.Key == "step").SecondsPerStep;
            Console.WriteLine($"\n{precision} profile of one full fine-tuning step (batch {trainBatch} x {length}, {threads} threads; {precision} matmul ceiling {ceiling / 1e9:F0} GFLOP/s):");
            Console.WriteLine($"  {"part",-18} {"ms/step",9} {"share",7} {"GFLOP/s",8}  what");
            foreach (var part in profile)
            {
                metrics[$"{prefix}_{part.Key}_ms"] = part.SecondsPerStep * 1000;
                if (part.Gflops is { } g) metrics[$"{prefix}_{part.Key}_fraction_of_{precision}_ceiling"] = g * 1e9 / ceiling;
                Console.WriteLine($"  {part.Key,-18} {part.SecondsPerStep * 1000,9:F1} {part.SecondsPerStep / whole,7:P1} {(part.Gflops is { } gf ? gf.ToString("F0") : ""),8}  {part.Description}");
            }
        }

        return new BenchResult
        {
            Suite = Name,
            Model = $"minilm ({encoder.ParameterCount:N0} parameters), sequence length {length}, {threads} threads; CPU {mkl.Cpu}; " +
                    $"MKL {(mkl.Active ? "dispatch by features" : "vendor check kept")}, {MklDispatch.DescribeCodePath(MklDispatch.CodePath())}; " +
                    $"fp32 ceiling {fp32 / 1e9:F0} GFLOP/s ({ceiling.BestEngine})",
            Dataset = "random token ids (speed does not depend on the text)",
            Quick = context.Quick,
            TrainExamples = trainBatch,
            TestExamples = batches.Sum(),
            TrainSeconds = step,
            PredictSeconds = 0,
            Metrics = metrics,
        };
    }

    /// <summary>docs/images/throughput-vs-batch.png: inference tokens/s of SharpTune and ONNX Runtime against batch size.</summary>
    static void PlotThroughput(BenchContext context, int[] batches, OrderedDictionary<string, double> metrics)
    {
        var plot = new ScottPlot.Plot();
        var xs = batches.Select(b => (double)b).ToArray();
        foreach (var (engine, label) in new[] { ("sharptune", "SharpTune (TorchSharp)"), ("onnxruntime", "ONNX Runtime") })
        {
            var line = plot.Add.Scatter(xs, batches.Select(b => metrics[$"infer_b{b}_{engine}_tokens_per_s"]).ToArray());
            line.LegendText = label;
        }
        Plots.Save(plot, context.RepoRoot, "throughput-vs-batch.png", "batch size (sequences of 128 tokens)", "inference tokens / s",
            $"minilm inference, {Environment.ProcessorCount} threads");
    }

    static double MatmulFlops(int size, ScalarType type, int repeats) => MatmulCeiling.Flops(size, size, size, type, repeats);
}
