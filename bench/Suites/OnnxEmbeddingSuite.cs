using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SharpTune.Bench.Reporting;
using SharpTune.ModelFolders;
using SharpTune.Models;
using SharpTune.Tokenization;
using static SharpTune.Bench.Suites.Timing;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites;

/// <summary>
/// Embeddings per second of the built-in minilm (all-MiniLM-L6-v2: mean pooling, normalised): SharpTune's encoder in
/// process (libtorch) against ONNX Runtime on the file <c>sharptune export --format onnx</c> writes, in the same process,
/// on the same token batches (batch 1 and 32), timed in turns. Tokenization is done once before timing and counted by
/// neither side. Both run with the same number of threads.
/// </summary>
public sealed class OnnxEmbeddingSuite : IBenchSuite
{
    public string Name => "onnx-embeddings";

    public string Description => "minilm embeddings/s: SharpTune in process vs ONNX Runtime on its exported file, batch 1 and 32, same batches";

    static readonly string[] Words =
    [
        "the", "model", "reads", "a", "short", "text", "and", "returns", "one", "vector", "for", "search", "over", "documents",
        "questions", "answers", "are", "compared", "by", "cosine", "similarity", "in", "an", "index", "of", "product", "reviews",
        "support", "tickets", "with", "many", "words", "that", "repeat", "often", "while", "some", "rare", "names", "appear",
        "only", "once", "fine-tuning", "on", "a", "laptop", "takes", "minutes", "not", "hours",
    ];

    public BenchResult Run(BenchContext context)
    {
        int singles = context.Quick ? 16 : 64, batched = context.Quick ? 64 : 256, rounds = context.Quick ? 2 : 5;
        string folder = Path.Combine(Path.GetTempPath(), "sharptune-onnx-bench");
        string onnx = Path.Combine(folder, "minilm.onnx");
        using var encoder = PretrainedEncoder.Load("minilm");
        var embedding = SentenceEmbedding.For("minilm", encoder);
        var export = Stopwatch(() => OnnxExport.ExportEncoder(encoder, embedding, "minilm", onnx));
        Console.WriteLine($"exported {onnx} in {export:F1} s");

        var tokenizer = encoder.CreateTokenizer();
        var random = new Random(17);
        string Sentence() => string.Join(" ", Enumerable.Range(0, random.Next(6, 40)).Select(_ => Words[random.Next(Words.Length)]));
        var texts = Enumerable.Range(0, Math.Max(singles, batched)).Select(_ => Sentence()).ToArray();
        var encoded = texts.Select(t => tokenizer.Encode(t, maxLength: 128)).ToArray();
        var ones = encoded.Take(singles).Select(e => TokenBatch.Collate([e], tokenizer.PadId)).ToList();
        var thirtyTwos = encoded.Take(batched).Chunk(32).Select(c => TokenBatch.Collate(c, tokenizer.PadId)).ToList();
        double meanTokens = encoded.Take(batched).Average(e => e.InputIds.Length);

        int threads = get_num_threads();
        using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var session = new InferenceSession(onnx, options);
        var feeds = new Dictionary<TokenBatch, List<NamedOnnxValue>>();
        foreach (var batch in ones.Concat(thirtyTwos))
        {
            int[] dims = [batch.BatchSize, batch.SequenceLength];
            feeds[batch] =
            [
                NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(batch.InputIds.data<long>().ToArray(), dims)),
                NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(batch.AttentionMask.data<long>().ToArray(), dims)),
                NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(batch.TokenTypeIds.data<long>().ToArray(), dims)),
            ];
        }
        string[] wanted = ["sentence_embedding"];
        float[] SharpTune(TokenBatch batch)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            return embedding.Embed(encoder.Model, batch.InputIds, batch.AttentionMask, batch.TokenTypeIds).data<float>().ToArray();
        }
        float[] Runtime(TokenBatch batch)
        {
            using var results = session.Run(feeds[batch], wanted);
            return results.Single().AsTensor<float>().ToArray();
        }

        // The two sides agree before they are timed.
        double difference = ones.Concat(thirtyTwos).Max(b => SharpTune(b).Zip(Runtime(b)).Max(p => Math.Abs(p.First - p.Second)));
        var metrics = new OrderedDictionary<string, double> { ["load_average_at_start"] = LoadAverage(), ["threads"] = threads };
        foreach (var (size, batches) in new[] { (1, ones), (32, thirtyTwos) })
        {
            int count = batches.Sum(b => b.BatchSize);
            var times = InTurns(rounds, 2, () => batches.ForEach(b => SharpTune(b)), () => batches.ForEach(b => Runtime(b)));
            double sharptune = count / times.Best(0), runtime = count / times.Best(1);
            var ratio = times.Ratio(0, 1); // SharpTune's time over ONNX Runtime's: how many times faster ONNX Runtime is
            Console.WriteLine($"batch {size}: SharpTune {sharptune:F1} embeddings/s, ONNX Runtime {runtime:F1} embeddings/s; ONNX Runtime/SharpTune {ratio}");
            metrics[$"batch{size}_sharptune_embeddings_per_second"] = sharptune;
            metrics[$"batch{size}_onnxruntime_embeddings_per_second"] = runtime;
            ratio.Report(metrics, $"batch{size}_onnxruntime_speedup");
        }
        metrics["max_abs_difference"] = difference;
        metrics["export_seconds"] = export;
        metrics["load_average_at_end"] = LoadAverage();
        foreach (var batch in ones.Concat(thirtyTwos)) batch.Dispose();

        return new BenchResult
        {
            Suite = Name,
            Model = $"minilm (all-MiniLM-L6-v2, mean pooling, normalised) exported to ONNX; {threads} threads each, same process, timed in turns " +
                    $"(best of {rounds} rounds); load {metrics["load_average_at_start"]:F1} at start on {Environment.ProcessorCount} cores",
            Dataset = $"{texts.Length} generated sentences (mean {meanTokens:F1} tokens): {singles} at batch 1, {batched} at batch 32",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = Math.Max(singles, batched),
            TrainSeconds = 0,
            PredictSeconds = 0,
            Metrics = metrics,
        };
    }

    static double Stopwatch(Action action)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        action();
        return clock.Elapsed.TotalSeconds;
    }
}
