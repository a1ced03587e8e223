using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SharpTune.ModelFolders;
using SharpTune.Models;

namespace SharpTune.Bench.Suites.Serving;

/// <summary>
/// The comparison <c>serve-load</c> draws for embeddings: the built-in minilm exported with <c>export --format onnx</c>
/// (mean pooling and normalisation inside the graph) and served by ONNX Runtime from a plain Kestrel endpoint in the same
/// process, with the same request and answer shape as <c>/v1/embeddings</c>: each request tokenized with the model's own
/// tokenizer and run alone (ONNX Runtime's session takes concurrent calls; it has no batching of its own).
/// </summary>
public sealed class OnnxRuntimeEmbeddingServer : IAsyncDisposable
{
    readonly WebApplication app;
    readonly InferenceSession session;

    OnnxRuntimeEmbeddingServer(WebApplication app, InferenceSession session, Uri address) => (this.app, this.session, Address) = (app, session, address);

    public Uri Address { get; }

    public static async Task<OnnxRuntimeEmbeddingServer> StartAsync(string folder, int threads)
    {
        Directory.CreateDirectory(folder);
        string onnx = Path.Combine(folder, "minilm.onnx");
        using var encoder = PretrainedEncoder.Load("minilm");
        encoder.Model.eval();
        OnnxExport.ExportEncoder(encoder, SentenceEmbedding.For("minilm", encoder), "minilm", onnx);
        var tokenizer = encoder.CreateTokenizer();
        var options = new Microsoft.ML.OnnxRuntime.SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        var session = new InferenceSession(onnx, options);

        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        app.MapPost("/v1/embeddings", async (HttpContext http) =>
        {
            var request = await JsonNode.ParseAsync(http.Request.Body);
            string text = request?["input"]?.GetValue<string>() ?? "";
            var encoded = tokenizer.Encode(text, maxLength: 256);
            int length = encoded.InputIds.Length;
            long[] Row(IEnumerable<int> values) => [.. values.Select(v => (long)v)];
            int[] dims = [1, length];
            var feeds = new List<NamedOnnxValue>
            {
                NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(Row(encoded.InputIds), dims)),
                NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(Enumerable.Repeat(1L, length).ToArray(), dims)),
                NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(Row(encoded.TokenTypeIds), dims)),
            };
            using var results = session.Run(feeds, ["sentence_embedding"]);
            var vector = new JsonArray([.. results.Single().AsTensor<float>().Select(v => (JsonNode)v)]);
            var answer = new JsonObject
            {
                ["object"] = "list", ["model"] = "minilm-onnx",
                ["data"] = new JsonArray(new JsonObject { ["object"] = "embedding", ["index"] = 0, ["embedding"] = vector }),
            };
            http.Response.ContentType = "application/json";
            await http.Response.WriteAsync(answer.ToJsonString());
        });
        await app.StartAsync();
        return new OnnxRuntimeEmbeddingServer(app, session, new Uri(app.Urls.First()));
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
        session.Dispose();
    }
}
