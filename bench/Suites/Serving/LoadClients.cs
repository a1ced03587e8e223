using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Bench.Suites.Serving;

/// <summary>What one request saw from the client's side. <paramref name="Error"/> is null for a request that succeeded.</summary>
/// <param name="FirstTokenSeconds">From sending to the first chunk carrying text (streamed chat); the whole request otherwise.</param>
public sealed record RequestTiming(double Seconds, double FirstTokenSeconds, int CompletionTokens, string? Error)
{
    /// <summary>The prompt's tokens, as the server's usage counts them (0 when it gave none).</summary>
    public int PromptTokens { get; init; }
}

/// <summary>
/// The bench's HTTP clients, as an application would call the server: streamed chat completions (server-sent events, the
/// usage chunk asked for) and embeddings, each client sending its requests one after another over loopback.
/// </summary>
public static class LoadClients
{
    public static HttpClient Create(Uri address) => new(new SocketsHttpHandler { MaxConnectionsPerServer = 256 })
    {
        BaseAddress = address, Timeout = TimeSpan.FromMinutes(30),
    };

    /// <summary><paramref name="clients"/> concurrent clients, each sending <paramref name="requests"/> requests in turn; every timing, in order of completion.</summary>
    public static (List<RequestTiming> Timings, double Seconds) Run(int clients, int requests, Func<int, int, Task<RequestTiming>> send)
    {
        var clock = Stopwatch.StartNew();
        var all = Task.WhenAll(Enumerable.Range(0, clients).Select(async client =>
        {
            var mine = new List<RequestTiming>();
            for (int r = 0; r < requests; r++) mine.Add(await send(client, r));
            return mine;
        })).GetAwaiter().GetResult();
        return (all.SelectMany(t => t).ToList(), clock.Elapsed.TotalSeconds);
    }

    /// <summary>One streamed chat completion of <paramref name="maxTokens"/> tokens at most, sampled with <paramref name="seed"/>.</summary>
    public static async Task<RequestTiming> Chat(HttpClient http, string model, string content, int maxTokens, int seed)
    {
        var body = new JsonObject
        {
            ["model"] = model, ["max_tokens"] = maxTokens, ["temperature"] = 0.8, ["seed"] = seed, ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
        };
        var clock = Stopwatch.StartNew();
        double firstToken = double.NaN;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json(body) };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            if (!response.IsSuccessStatusCode)
                return new(clock.Elapsed.TotalSeconds, double.NaN, 0, $"HTTP {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            int tokens = -1, promptTokens = 0;
            bool done = false;
            while (await reader.ReadLineAsync() is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                string data = line["data: ".Length..];
                if (data == "[DONE]") { done = true; break; }
                var chunk = JsonNode.Parse(data)!;
                if (chunk["usage"] is JsonObject usage)
                {
                    tokens = usage["completion_tokens"]!.GetValue<int>();
                    promptTokens = usage["prompt_tokens"]!.GetValue<int>();
                }
                if (double.IsNaN(firstToken) && chunk["choices"] is JsonArray { Count: > 0 } choices
                    && choices[0]!["delta"]?["content"]?.GetValue<string>() is { Length: > 0 })
                    firstToken = clock.Elapsed.TotalSeconds;
            }
            double seconds = clock.Elapsed.TotalSeconds;
            string? error = !done ? "the stream ended without [DONE]" : tokens < 1 ? "no usage chunk with completion tokens" : null;
            return new(seconds, double.IsNaN(firstToken) ? seconds : firstToken, Math.Max(tokens, 0), error) { PromptTokens = promptTokens };
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException or TaskCanceledException)
        {
            return new(clock.Elapsed.TotalSeconds, double.NaN, 0, e.GetType().Name + ": " + e.Message);
        }
    }

    /// <summary>One embeddings request for <paramref name="text"/>, checked to hold one vector.</summary>
    public static async Task<RequestTiming> Embed(HttpClient http, string model, string text)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            using var response = await http.PostAsync("/v1/embeddings", Json(new JsonObject { ["model"] = model, ["input"] = text }));
            string answer = await response.Content.ReadAsStringAsync();
            double seconds = clock.Elapsed.TotalSeconds;
            if (!response.IsSuccessStatusCode) return new(seconds, seconds, 0, $"HTTP {(int)response.StatusCode}: {answer}");
            var data = JsonNode.Parse(answer)!["data"]!.AsArray();
            return new(seconds, seconds, 0, data.Count == 1 && data[0]!["embedding"]!.AsArray().Count > 0 ? null : "no embedding in the answer");
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException or TaskCanceledException)
        {
            return new(clock.Elapsed.TotalSeconds, double.NaN, 0, e.GetType().Name + ": " + e.Message);
        }
    }

    /// <summary>The <paramref name="p"/>-th percentile (0..100) by linear interpolation between ranks, as numpy's default.</summary>
    public static double Percentile(IEnumerable<double> values, double p)
    {
        var sorted = values.Where(v => !double.IsNaN(v)).Order().ToArray();
        if (sorted.Length == 0) return double.NaN;
        double rank = p / 100 * (sorted.Length - 1);
        int low = (int)Math.Floor(rank), high = Math.Min(low + 1, sorted.Length - 1);
        return sorted[low] + (rank - low) * (sorted[high] - sorted[low]);
    }

    static StringContent Json(JsonObject body) =>
        new(body.ToJsonString(), Encoding.UTF8, new MediaTypeHeaderValue("application/json"));
}
