using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SharpTune.Bench.Reporting;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites;

/// <summary>
/// Throughput against the peers and the machine, measured side by side in one process with the same
/// threads: the fp32 and bf16 matrix-product ceilings (libtorch, square matrices), minilm inference in
/// SharpTune against ONNX Runtime on the same ONNX file and batches, and full fine-tuning throughput as
/// achieved FLOP/s over the fp32 ceiling. FLOPs of a training step: 6 x non-embedding parameters per token
/// (forward 2, backward 4) plus the attention products, 3 x (4 T^2 H) per layer and sequence.
/// </summary>
public sealed class SpeedSuite : IBenchSuite
{
    public string Name => "speed";

    public string Description => "matmul ceiling, minilm inference vs ONNX Runtime, training FLOP/s (no data needed)";

    public BenchResult Run(BenchContext context)
    {
        int threads = Environment.ProcessorCount;
        set_num_threads(threads);
        int length = 128;
        int[] batches = context.Quick ? [8] : [1, 8, 32];
        int repeats = context.Quick ? 2 : 5;
        var metrics = new OrderedDictionary<string, double>();

        int size = context.Quick ? 1024 : 2048;
        double fp32 = MatmulFlops(size, ScalarType.Float32, repeats);
        double bf16 = MatmulFlops(size, ScalarType.BFloat16, repeats);
        metrics["matmul_fp32_gflops"] = fp32 / 1e9;
        metrics["matmul_bf16_gflops"] = bf16 / 1e9;

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
            double ours = Seconds(() =>
            {
                using var mode = inference_mode();
                using var output = model.forward(ids, mask, types);
            }, repeats);
            var dims = new[] { batch, length };
            var feeds = new List<NamedOnnxValue>
            {
                NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(ids.data<long>().ToArray(), dims)),
                NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(mask.data<long>().ToArray(), dims)),
                NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(types.data<long>().ToArray(), dims)),
            };
            double ort = Seconds(() => { using var results = session.Run(feeds); }, repeats);
            metrics[$"infer_b{batch}_sharptune_tokens_per_s"] = batch * length / ours;
            metrics[$"infer_b{batch}_onnxruntime_tokens_per_s"] = batch * length / ort;
            metrics[$"infer_b{batch}_ratio_vs_onnxruntime"] = ort / ours;
        }

        if (batches.Length > 1) PlotThroughput(context, batches, metrics);

        // Full fine-tuning steps of the sequence classifier (forward, loss, backward, AdamW step).
        int trainBatch = context.Quick ? 8 : 32;
        using var task = TaskModelBuilder.Build(encoder, new HeadOptions(TaskKind.SingleLabel, 2));
        task.train();
        var optimizer = OptimizerFactory.Create("adamw", task, 5e-5, 0.01, 0);
        using var trainIds = randint(1000, 29000, [trainBatch, length], dtype: ScalarType.Int64);
        using var labels = randint(0, 2, [trainBatch], dtype: ScalarType.Int64);
        var inputs = new ModelInputs(trainIds, ones(trainBatch, length, ScalarType.Int64), zeros(trainBatch, length, ScalarType.Int64));
        double StepSeconds(TaskModel model, TorchSharp.torch.optim.Optimizer opt) => Seconds(() =>
        {
            using var scope = NewDisposeScope();
            var loss = model.Loss(model.forward(inputs), labels, inputs);
            loss.backward();
            opt.step();
            opt.zero_grad();
        }, context.Quick ? 2 : 3);
        double step = StepSeconds(task, optimizer);

        // bf16 mixed precision: the same step with bf16 matrix products and attention over fp32 master weights.
        using var mixed = TaskModelBuilder.Build(encoder, new HeadOptions(TaskKind.SingleLabel, 2), bf16: true);
        mixed.train();
        double mixedStep = StepSeconds(mixed, OptimizerFactory.Create("adamw", mixed, 5e-5, 0.01, 0));
        metrics[$"train_b{trainBatch}_bf16_seconds_per_step"] = mixedStep;
        metrics[$"train_b{trainBatch}_bf16_speedup_over_fp32"] = step / mixedStep;
        mixed.eval();
        using (var ids = randint(1000, 29000, [trainBatch, length], dtype: ScalarType.Int64))
        {
            double fp32Inference = Seconds(() => { using var mode = inference_mode(); using var o = task.forward(new ModelInputs(ids, ones(trainBatch, length, ScalarType.Int64), zeros(trainBatch, length, ScalarType.Int64))); }, repeats);
            double bf16Inference = Seconds(() => { using var mode = inference_mode(); using var o = mixed.forward(new ModelInputs(ids, ones(trainBatch, length, ScalarType.Int64), zeros(trainBatch, length, ScalarType.Int64))); }, repeats);
            metrics[$"infer_b{trainBatch}_bf16_tokens_per_s"] = trainBatch * length / bf16Inference;
            metrics[$"infer_b{trainBatch}_bf16_speedup_over_fp32"] = fp32Inference / bf16Inference;
        }
        var config = encoder.Config;
        long nonEmbedding = task.named_parameters().Where(p => !p.name.StartsWith("bert.embeddings.")).Sum(p => p.parameter.numel());
        double tokens = trainBatch * length;
        double flops = 6.0 * nonEmbedding * tokens + 3.0 * config.NumHiddenLayers * trainBatch * 4.0 * length * length * config.HiddenSize;
        metrics[$"train_b{trainBatch}_seconds_per_step"] = step;
        metrics[$"train_b{trainBatch}_tokens_per_s"] = tokens / step;
        metrics[$"train_b{trainBatch}_gflops"] = flops / step / 1e9;
        metrics[$"train_b{trainBatch}_fraction_of_fp32_ceiling"] = flops / step / fp32;

        return new BenchResult
        {
            Suite = Name,
            Model = $"minilm ({encoder.ParameterCount:N0} parameters), sequence length {length}, {threads} threads",
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
        plot.Axes.Bottom.Label.Text = "batch size (sequences of 128 tokens)";
        plot.Axes.Left.Label.Text = "inference tokens / s";
        plot.Title($"minilm inference, {Environment.ProcessorCount} threads");
        plot.ShowLegend();
        string png = Path.Combine(context.RepoRoot, "docs", "images", "throughput-vs-batch.png");
        Directory.CreateDirectory(Path.GetDirectoryName(png)!);
        plot.SavePng(png, 800, 500);
    }

    static double MatmulFlops(int size, ScalarType type, int repeats)
    {
        using var a = randn(size, size).to(type);
        using var b = randn(size, size).to(type);
        double seconds = Seconds(() => { using var c = a.matmul(b); }, repeats);
        return 2.0 * size * size * size / seconds;
    }

    /// <summary>Best of <paramref name="repeats"/> timings after one warm-up call: the least disturbed run on a noisy machine.</summary>
    static double Seconds(Action action, int repeats)
    {
        action();
        double best = double.MaxValue;
        for (int i = 0; i < repeats; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return best;
    }
}
