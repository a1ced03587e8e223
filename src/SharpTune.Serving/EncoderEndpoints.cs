using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using SharpTune.Inference;

namespace SharpTune.Serving;

/// <summary>
/// <c>POST /v1/embeddings</c> (the base encoder, pooled and normalised as it was trained) and <c>POST /v1/classify</c>
/// (fine-tuned task models by name: labels and probabilities, a value, or a label per word). A request's texts run as
/// batches; concurrent requests for the same model are joined into one call (<see cref="EncoderBatcher"/>), one call on the
/// model at a time, each using every core.
/// </summary>
public sealed class EncoderEndpoints(EncoderHost host, ServeOptions options)
{
    /// <summary>Embeddings' key in the batcher; a task model's is its name, which cannot be empty.</summary>
    const string EmbeddingsKey = "";
    readonly EncoderBatcher batcher = new(options.MaxInputs);

    public async Task Embeddings(HttpContext context, JsonRequest request)
    {
        string name = request.RequiredString("model");
        if (name != host.BaseName)
            throw new ApiError(404, $"The model '{name}' does not exist or gives no embeddings; embeddings come from '{host.BaseName}'", "model", "model_not_found");
        var texts = Inputs(request);
        string format = request.OptionalString("encoding_format") ?? "float";
        if (format is not ("float" or "base64")) throw ApiError.BadRequest("'encoding_format' must be float or base64", "encoding_format", "invalid_value");
        if (request.Integer("dimensions", 1, int.MaxValue) is { } dimensions && dimensions != host.Embedder.Dimensions)
            throw ApiError.BadRequest($"'dimensions' must be the model's {host.Embedder.Dimensions}, got {dimensions}", "dimensions", "invalid_value");
        var result = await batcher.Run(EmbeddingsKey, texts, all =>
        {
            var embedded = host.Embedder.Embed(all);
            return embedded.Vectors.Zip(embedded.TokensPerText).ToList();
        }, context.RequestAborted);
        var data = new JsonArray();
        for (int i = 0; i < result.Count; i++)
        {
            JsonNode embedding = format == "base64"
                ? Convert.ToBase64String(MemoryMarshal.AsBytes(result[i].First.AsSpan()))
                : new JsonArray(result[i].First.Select(v => (JsonNode)v).ToArray());
            data.Add(new JsonObject { ["object"] = "embedding", ["index"] = i, ["embedding"] = embedding });
        }
        int tokens = result.Sum(r => r.Second);
        await ServerResponses.Json(context, 200, new JsonObject
        {
            ["object"] = "list", ["data"] = data, ["model"] = name,
            ["usage"] = new JsonObject { ["prompt_tokens"] = tokens, ["total_tokens"] = tokens },
        });
    }

    public async Task Classify(HttpContext context, JsonRequest request)
    {
        string name = request.RequiredString("model");
        if (!host.TryGetTaskModel(name, out _))
            throw new ApiError(404, $"The model '{name}' does not exist or is no fine-tuned task model; served: {string.Join(", ", host.TaskModels)}",
                "model", "model_not_found");
        var texts = Inputs(request);
        var results = await batcher.Run(name, texts, all => host.Classify(name, all), context.RequestAborted);
        var data = new JsonArray();
        for (int i = 0; i < results.Count; i++)
        {
            var r = results[i];
            var item = new JsonObject { ["index"] = i };
            if (r.Value is { } value) item["value"] = value;
            else if (r.Words is { } words)
            {
                item["words"] = new JsonArray(words.Select(w => (JsonNode)w).ToArray());
                item["labels"] = new JsonArray(r.Labels.Select(l => (JsonNode)l).ToArray());
            }
            else
            {
                item["label"] = r.Labels.FirstOrDefault();
                item["labels"] = new JsonArray(r.Labels.Select(l => (JsonNode)l).ToArray());
                if (r.Probabilities is { } p) item["probabilities"] = new JsonObject(p.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
            }
            data.Add(item);
        }
        await ServerResponses.Json(context, 200, new JsonObject { ["object"] = "list", ["model"] = name, ["data"] = data });
    }

    List<string> Inputs(JsonRequest request)
    {
        var texts = request.Strings("input", options.MaxInputs)
            ?? throw ApiError.BadRequest("'input' is required", "input", "missing_required_parameter");
        if (texts.Count == 0) throw ApiError.BadRequest("'input' must not be empty", "input", "invalid_value");
        return [.. texts];
    }
}
