using System.Diagnostics;
using System.Text.Json.Nodes;
using SharpTune.Bench.Reporting;
using SharpTune.Bench.Suites.Decoders;
using SharpTune.Inference;
using SharpTune.Models.Decoders;
using SharpTune.Native;
using SharpTune.Peft;
using SharpTune.Serving;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites.Serving;

/// <summary>
/// <c>sharptune serve</c> under load, in this process over loopback (issue 21, item 5). Decoder: the Qwen2.5-0.5B-shaped
/// random model (F32 file, dense fp32 weights as <c>serve --dtype fp32</c> holds them) with two LoRA runs over it (one training step each, so they differ from the base and
/// from each other); 16 clients each send 8 streamed chat requests of 64 tokens one after another, the two adapters taking
/// turns. Reported: failed requests (goal 0), aggregate completion tokens/s against one client alone sending the same
/// requests, half before the load and half after (goal &gt;= 3x), p50/p95 latency and time to first token. Encoder: the built-in minilm's
/// <c>/v1/embeddings</c>, one text per request from 8 clients (joined into batches while the model is busy) against one
/// client alone, and the same clients against ONNX Runtime serving the file <c>export --format onnx</c> writes from a
/// Kestrel endpoint in this process (<see cref="OnnxRuntimeEmbeddingServer"/>): requests/s and latency.
/// </summary>
public sealed class ServeLoadSuite : IBenchSuite
{
    const int Threads = 2;
    /// <summary>
    /// The random model's vocabulary spells text byte by byte, so a request's prompt is kept to what a real tokenizer makes
    /// of a short question (about 22 tokens with the chat template; each result reports the mean).
    /// </summary>
    static string Question(int client, int request) => $"{client}.{request}: the river?";

    public string Name => "serve-load";

    public string Description => "sharptune serve over loopback: 16 clients x 8 streamed chat requests of 64 tokens, two LoRA adapters mixed, on the Qwen2.5-0.5B-shaped model; embeddings requests/s against ONNX Runtime serving the exported file";

    /// <summary>The load's size: full as the issue asks; --quick 4 layers and a 32,000-token vocabulary, 2 requests of 16 tokens per client.</summary>
    sealed record Plan(Qwen2Shape Shape, int Clients, int Requests, int Tokens, int SingleRequests, int EmbedClients, int EmbedRequests);

    public BenchResult Run(BenchContext context)
    {
        var mkl = MklDispatch.Ensure();
        set_num_threads(Threads);
        var plan = context.Quick
            ? new Plan(Qwen2Shape.Quick, Clients: 16, Requests: 2, Tokens: 16, SingleRequests: 2, EmbedClients: 8, EmbedRequests: 8)
            : new Plan(Qwen2Shape.Qwen25_05B, Clients: 16, Requests: 8, Tokens: 64, SingleRequests: 4, EmbedClients: 8, EmbedRequests: 32);   // single: 2 before, 2 after
        var metrics = new OrderedDictionary<string, double>();
        var clock = Stopwatch.StartNew();
        string folder = RandomQwen2Gguf.Folder(context.Quick);
        string model = RandomQwen2Gguf.Write(plan.Shape, folder).F32;
        var runs = new[] { "a", "b" }.ToDictionary(name => name, name => Adapter(model, folder, name, seed: name == "a" ? 1 : 2));
        Console.WriteLine($"  model and adapters ready in {clock.Elapsed.TotalSeconds:F0} s: {model}");
        double loadAverage = Timing.LoadAverage();

        MeasureChat(plan, model, runs, metrics);
        MeasureEmbeddings(plan, metrics);
        metrics["load_average_at_start"] = loadAverage;
        metrics["load_average_at_end"] = Timing.LoadAverage();
        return new BenchResult
        {
            Suite = Name,
            Model = $"qwen2 with {plan.Shape.Name} ({plan.Shape.Parameters:N0} parameters, random weights, F32 file held as dense fp32, serve --dtype fp32) and two LoRA adapters " +
                    $"(r 8 on q_proj, v_proj); minilm for embeddings; {Threads} libtorch threads; CPU {mkl.Cpu}",
            Dataset = $"{plan.Clients} clients x {plan.Requests} streamed chat requests of {plan.Tokens} tokens over loopback, adapters a and b in turn; " +
                      $"single stream: {plan.SingleRequests} requests from one client, half before the load and half after; embeddings: {plan.EmbedClients} clients x {plan.EmbedRequests} one-text requests",
            Quick = context.Quick,
            TrainExamples = 0,
            TestExamples = plan.Clients * plan.Requests,
            TrainSeconds = 0,
            PredictSeconds = metrics["load_seconds"],
            Metrics = metrics,
        };
    }

    static void MeasureChat(Plan plan, string model, Dictionary<string, string> runs, OrderedDictionary<string, double> metrics)
    {
        using var host = new LanguageModelHost(model, WeightStorage.Parse("fp32"), baseName: "base");
        foreach (var (name, run) in runs) host.Add(name, run);
        var server = OpenAiServer.StartAsync(host, new ServeOptions { Port = 0, MaxBatch = plan.Clients, MaxQueue = 4 * plan.Clients }).GetAwaiter().GetResult();
        try
        {
            using var http = LoadClients.Create(server.Address);
            Task<RequestTiming> Send(int client, int request) => LoadClients.Chat(http, request % 2 == 0 ? "a" : "b",
                Question(client, request), plan.Tokens, seed: 1000 * client + request);
            foreach (string name in runs.Keys) Require(LoadClients.Chat(http, name, Question(0, 0), 4, seed: 0).GetAwaiter().GetResult(), "warm-up");

            // One client alone, before and after the load, so that both meet the machine's load as the load phase did.
            var single = new List<RequestTiming>();
            double singleSeconds = 0;
            void SingleStream()
            {
                var (timings, seconds) = LoadClients.Run(1, plan.SingleRequests / 2, Send);
                foreach (var timing in timings) Require(timing, "single stream");
                single.AddRange(timings);
                singleSeconds += seconds;
                Console.WriteLine($"  single stream: {timings.Sum(t => t.CompletionTokens)} tokens in {seconds:F1} s = {timings.Sum(t => t.CompletionTokens) / seconds:F2} tokens/s");
            }
            SingleStream();

            var (load, loadSeconds) = LoadClients.Run(plan.Clients, plan.Requests, Send);
            var ok = load.Where(t => t.Error is null).ToList();
            foreach (var failure in load.Where(t => t.Error is not null).Take(3)) Console.WriteLine($"  failed: {failure.Error}");
            SingleStream();
            double singleRate = single.Sum(t => t.CompletionTokens) / singleSeconds;
            long tokens = ok.Sum(t => t.CompletionTokens);
            double rate = tokens / loadSeconds;
            Console.WriteLine($"  {plan.Clients} clients: {load.Count} requests, {load.Count - ok.Count} failed, {tokens} tokens in {loadSeconds:F1} s = {rate:F2} tokens/s " +
                              $"({rate / singleRate:F2}x one stream)");

            metrics["requests"] = load.Count;
            metrics["failed_requests"] = load.Count - ok.Count;
            metrics["completion_tokens"] = tokens;
            metrics["prompt_tokens_per_request"] = ok.Count == 0 ? double.NaN : ok.Average(t => t.PromptTokens);
            metrics["load_seconds"] = loadSeconds;
            metrics["aggregate_tokens_per_s"] = rate;
            metrics["single_stream_tokens_per_s"] = singleRate;
            metrics["aggregate_over_single_stream"] = rate / singleRate;
            metrics["latency_p50_s"] = LoadClients.Percentile(ok.Select(t => t.Seconds), 50);
            metrics["latency_p95_s"] = LoadClients.Percentile(ok.Select(t => t.Seconds), 95);
            metrics["first_token_p50_s"] = LoadClients.Percentile(ok.Select(t => t.FirstTokenSeconds), 50);
            metrics["first_token_p95_s"] = LoadClients.Percentile(ok.Select(t => t.FirstTokenSeconds), 95);
            metrics["single_stream_latency_p50_s"] = LoadClients.Percentile(single.Select(t => t.Seconds), 50);
            metrics["single_stream_first_token_p50_s"] = LoadClients.Percentile(single.Select(t => t.FirstTokenSeconds), 50);
        }
        finally
        {
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    static void MeasureEmbeddings(Plan plan, OrderedDictionary<string, double> metrics)
    {
        using var host = new EncoderHost("minilm");
        var server = OpenAiServer.StartAsync(host, new ServeOptions { Port = 0 }).GetAwaiter().GetResult();
        try
        {
            using var http = LoadClients.Create(server.Address);
            Task<RequestTiming> Send(int client, int request) =>
                LoadClients.Embed(http, host.BaseName, $"message {request} of client {client}: the meeting moved to thursday, bring the river survey");
            Require(Send(0, 0).GetAwaiter().GetResult(), "embeddings warm-up");
            var (alone, aloneSeconds) = LoadClients.Run(1, plan.EmbedRequests, Send);
            foreach (var timing in alone) Require(timing, "embeddings, one client");
            var (timings, seconds) = LoadClients.Run(plan.EmbedClients, plan.EmbedRequests, Send);
            var ok = timings.Where(t => t.Error is null).ToList();
            Console.WriteLine($"  embeddings: {timings.Count} requests, {timings.Count - ok.Count} failed, in {seconds:F1} s = {ok.Count / seconds:F1} requests/s " +
                              $"(one client: {alone.Count / aloneSeconds:F1})");
            metrics["embeddings_requests"] = timings.Count;
            metrics["embeddings_failed_requests"] = timings.Count - ok.Count;
            metrics["embeddings_requests_per_s"] = ok.Count / seconds;
            metrics["embeddings_one_client_requests_per_s"] = alone.Count / aloneSeconds;
            metrics["embeddings_latency_p50_s"] = LoadClients.Percentile(ok.Select(t => t.Seconds), 50);
            metrics["embeddings_latency_p95_s"] = LoadClients.Percentile(ok.Select(t => t.Seconds), 95);
        }
        finally
        {
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        // The same clients and texts against ONNX Runtime serving the exported file from this process.
        var runtime = OnnxRuntimeEmbeddingServer.StartAsync(Path.Combine(Path.GetTempPath(), "sharptune-serve-load-onnx"), Threads).GetAwaiter().GetResult();
        try
        {
            using var http = LoadClients.Create(runtime.Address);
            Task<RequestTiming> Send(int client, int request) =>
                LoadClients.Embed(http, "minilm-onnx", $"message {request} of client {client}: the meeting moved to thursday, bring the river survey");
            Require(Send(0, 0).GetAwaiter().GetResult(), "ONNX Runtime embeddings warm-up");
            var (timings, seconds) = LoadClients.Run(plan.EmbedClients, plan.EmbedRequests, Send);
            var ok = timings.Where(t => t.Error is null).ToList();
            double rate = ok.Count / seconds;
            Console.WriteLine($"  ONNX Runtime embeddings: {timings.Count} requests, {timings.Count - ok.Count} failed, in {seconds:F1} s = {rate:F1} requests/s; " +
                              $"sharptune serve {metrics["embeddings_requests_per_s"] / rate:F2}x that");
            metrics["onnxruntime_embeddings_requests_per_s"] = rate;
            metrics["onnxruntime_embeddings_failed_requests"] = timings.Count - ok.Count;
            metrics["onnxruntime_embeddings_latency_p50_s"] = LoadClients.Percentile(ok.Select(t => t.Seconds), 50);
            metrics["embeddings_over_onnxruntime"] = metrics["embeddings_requests_per_s"] / rate;
        }
        finally
        {
            runtime.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>A LoRA run over <paramref name="model"/> after one training step (kept in <paramref name="folder"/> for the next run of the suite).</summary>
    static string Adapter(string model, string folder, string name, int seed)
    {
        string run = Path.Combine(folder, $"serve-adapter-{name}");
        if (Directory.Exists(Path.Combine(run, "final"))) return run;
        if (Directory.Exists(run)) Directory.Delete(run, recursive: true);
        string data = Path.Combine(folder, "serve-adapter-data.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 20).Select(i => new JsonObject { ["text"] = $"the river {i} runs to the sea {i + 1} times" }.ToJsonString()));
        new FineTuneJob(new FineTuneOptions
        {
            Model = model, Task = "causal-lm", Train = data, Method = "lora", MaxLength = 24, Out = run, Threads = Threads,
            Peft = new PeftSettings { LoraR = 8, LoraTargets = ["q_proj", "v_proj"] },
            Training = new TrainingOptions { MaxSteps = 1, BatchSize = 2, LearningRate = 1e-2, WarmupRatio = 0, Schedule = "constant", Seed = seed },
        }, _ => { }).Run();
        return run;
    }

    static void Require(RequestTiming timing, string what)
    {
        if (timing.Error is not null) throw new InvalidOperationException($"{what}: {timing.Error}");
    }
}
