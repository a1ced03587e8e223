using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SharpTune.Bench.Reporting;
using SharpTune.ModelFolders;
using SharpTune.Models;
using SharpTune.Native;
using SharpTune.Tokenization;
using static SharpTune.Bench.Suites.Timing;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites;

/// <summary>
/// Embeddings per second of the built-in minilm (all-MiniLM-L6-v2: mean pooling, normalised): SharpTune's encoder in
/// process (libtorch) against ONNX Runtime on the file <c>sharptune export --format onnx</c> writes, in the same process,
/// on the same token batches, timed in turns: short sentences (6 to 40 words) and long texts (cut at 128 tokens), each at
/// batch 1 and 32. Tokenization is done once before timing and counted by neither side. Both run with the same number of
/// threads; the ratio is taken within each round (SharpTune's time over ONNX Runtime's) and reported as the median with
/// its spread.
/// </summary>
public sealed class OnnxEmbeddingSuite : IBenchSuite
{
    public string Name => "onnx-embeddings";

    public string Description => "minilm embeddings/s: SharpTune in process vs ONNX Runtime on its exported file, short and long texts at batch 1 and 32";

    const int LongTokens = 128;

    static readonly string[] Words =
    [
        "the", "model", "reads", "a", "short", "text", "and", "returns", "one", "vector", "for", "search", "over", "documents",
        "questions", "answers", "are", "compared", "by", "cosine", "similarity", "in", "an", "index", "of", "product", "reviews",
        "support", "tickets", "with", "many", "words", "that", "repeat", "often", "while", "some", "rare", "names", "appear",
        "only", "once", "fine-tuning", "on", "a", "laptop", "takes", "minutes", "not", "hours",
    ];

    /// <summary>One cell of the comparison: texts of one length, collated at one batch size.</summary>
    sealed record Cell(string Name, int BatchSize, List<TokenBatch> Batches)
    {
        public int Texts => Batches.Sum(b => b.BatchSize);
        public double MeanTokens => Batches.Sum(b => b.AttentionMask.sum().item<long>()) / (double)Texts;
    }

    public BenchResult Run(BenchContext context)
    {
        int rounds = context.Quick ? 2 : 5;
        string folder = Path.Combine(Path.GetTempPath(), "sharptune-onnx-bench");
        string onnx = Path.Combine(folder, "minilm.onnx");
        using var encoder = PretrainedEncoder.Load("minilm");
        encoder.Model.eval();
        var embedding = SentenceEmbedding.For("minilm", encoder);
        var export = Stopwatch(() => OnnxExport.ExportEncoder(encoder, embedding, "minilm", onnx));
        Console.WriteLine($"exported {onnx} in {export:F1} s");

        var tokenizer = encoder.CreateTokenizer();
        var random = new Random(17);
        string Text(int minWords, int maxWords) =>
            string.Join(" ", Enumerable.Range(0, random.Next(minWords, maxWords)).Select(_ => Words[random.Next(Words.Length)]));
        TokenBatch[] Collated(IEnumerable<string> texts, int batchSize) => texts.Select(t => tokenizer.Encode(t, maxLength: LongTokens))
            .Chunk(batchSize).Select(c => TokenBatch.Collate(c, tokenizer.PadId)).ToArray();
        // Short: sentences as a search index holds them. Long: paragraphs past 128 tokens, cut there, so every row is 128.
        string[] shortTexts = Enumerable.Range(0, context.Quick ? 64 : 256).Select(_ => Text(6, 40)).ToArray();
        string[] longTexts = Enumerable.Range(0, context.Quick ? 32 : 64).Select(_ => Text(160, 200)).ToArray();
        Cell[] cells =
        [
            new("short_b1", 1, [.. Collated(shortTexts.Take(context.Quick ? 16 : 64), 1)]),
            new("short_b32", 32, [.. Collated(shortTexts, 32)]),
            new("long_b1", 1, [.. Collated(longTexts.Take(context.Quick ? 8 : 32), 1)]),
            new("long_b32", 32, [.. Collated(longTexts, 32)]),
        ];
        var all = cells.SelectMany(c => c.Batches).ToList();

        int threads = get_num_threads();
        using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var session = new InferenceSession(onnx, options);
        var feeds = new Dictionary<TokenBatch, List<NamedOnnxValue>>();
        foreach (var batch in all)
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
            using var _ = inference_mode();
            return embedding.Embed(encoder.Model, batch.InputIds, batch.AttentionMask, batch.TokenTypeIds).data<float>().ToArray();
        }
        float[] Runtime(TokenBatch batch)
        {
            using var results = session.Run(feeds[batch], wanted);
            return results.Single().AsTensor<float>().ToArray();
        }

        // The two sides agree on every batch before they are timed.
        double difference = all.Max(b => SharpTune(b).Zip(Runtime(b)).Max(p => Math.Abs(p.First - p.Second)));
        var metrics = new OrderedDictionary<string, double> { ["load_average_at_start"] = LoadAverage(), ["threads"] = threads };
        foreach (var cell in cells)
        {
            var times = InTurns(rounds, 2, () => cell.Batches.ForEach(b => SharpTune(b)), () => cell.Batches.ForEach(b => Runtime(b)));
            double sharptune = cell.Texts / times.Best(0), runtime = cell.Texts / times.Best(1);
            var ratio = times.Ratio(0, 1); // SharpTune's time over ONNX Runtime's: how many times faster ONNX Runtime is
            Console.WriteLine($"{cell.Name} ({cell.Texts} texts, mean {cell.MeanTokens:F1} tokens): SharpTune {sharptune:F1} embeddings/s, " +
                              $"ONNX Runtime {runtime:F1} embeddings/s; ONNX Runtime/SharpTune {ratio} (load {LoadAverage():F1})");
            metrics[$"{cell.Name}_mean_tokens"] = cell.MeanTokens;
            metrics[$"{cell.Name}_sharptune_embeddings_per_second"] = sharptune;
            metrics[$"{cell.Name}_onnxruntime_embeddings_per_second"] = runtime;
            ratio.Report(metrics, $"{cell.Name}_onnxruntime_speedup");
        }
        metrics["max_abs_difference"] = difference;
        metrics["export_seconds"] = export;
        metrics["load_average_at_end"] = LoadAverage();
        foreach (var batch in all) batch.Dispose();

        return new BenchResult
        {
            Suite = Name,
            Model = $"minilm (all-MiniLM-L6-v2, mean pooling, normalised) exported to ONNX; {threads} threads each, same process, timed in turns " +
                    $"(best of {rounds} rounds; speedup = SharpTune's time over ONNX Runtime's, median of the rounds); CPU {CpuDescription.Current}; " +
                    $"load {metrics["load_average_at_start"]:F1} at start",
            Dataset = $"generated texts: {shortTexts.Length} short (6 to 40 words; {cells[0].Texts} at batch 1, {cells[1].Texts} at batch 32) and " +
                      $"{longTexts.Length} long (cut at {LongTokens} tokens; {cells[2].Texts} at batch 1, {cells[3].Texts} at batch 32)",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = shortTexts.Length + longTexts.Length,
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
