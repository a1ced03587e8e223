using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Inference;
using SharpTune.Serving;
using SharpTune.Tests.Cli;

namespace SharpTune.Tests.Serving;

/// <summary>
/// A tiny llama GGUF (byte tokens, so any text encodes; 96 positions) with two LoRA runs trained over it by the CLI, and a
/// server over the three on a free loopback port, shared by the serving tests.
/// </summary>
public sealed class ServingFixture : IDisposable
{
    public ServingFixture()
    {
        Model = CausalLmCliTests.TinyGguf(Temp);
        string data = CausalLmCliTests.Data(Temp);
        foreach (var (name, seed) in new[] { ("a", "1"), ("b", "2") })
        {
            string run = Temp.File($"run-{name}");
            var (code, output, error) = CliHarness.Run("train", "--model", Model, "--task", "causal-lm", "--train", data, "--method", "lora",
                "--lora-targets", "q_proj,v_proj,down_proj", "--max-steps", "4", "--batch-size", "4", "--lr", "5e-2", "--max-length", "40",
                "--seed", seed, "--out", run);
            if (code != 0) throw new InvalidOperationException($"training adapter {name} failed: {error}{output}");
            Runs[name] = run;
        }
        Host = new LanguageModelHost(Model, baseName: "base");
        foreach (var (name, run) in Runs) Host.Add(name, run);
        Server = OpenAiServer.StartAsync(Host, new ServeOptions { Port = 0, MaxBatch = 8, MaxQueue = 16 }).GetAwaiter().GetResult();
        Client = new HttpClient { BaseAddress = Server.Address, Timeout = TimeSpan.FromMinutes(2) };
    }

    public TestModels.TempFolder Temp { get; } = new();
    public string Model { get; }
    public Dictionary<string, string> Runs { get; } = new();
    public LanguageModelHost Host { get; }
    public OpenAiServer Server { get; }
    public HttpClient Client { get; }

    public void Dispose()
    {
        Client.Dispose();
        Server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Host.Dispose();
        Temp.Dispose();
    }
}

[CollectionDefinition(nameof(ServingCollection))]
public sealed class ServingCollection : ICollectionFixture<ServingFixture>;

/// <summary>Requests as raw HTTP, for what the SDKs never send.</summary>
static class Http
{
    /// <param name="expectContinue">Send <c>Expect: 100-continue</c> and the body only when the server asks for it: a server that
    /// refuses the request from its headers (a body over the limit) answers before the body is sent, where otherwise it
    /// closes the connection while the client is still writing it (a broken pipe, now and then, instead of the answer).</param>
    public static async Task<(int Status, JsonNode? Body)> Post(HttpClient client, string path, string body, string? apiKey = null, bool expectContinue = false)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (apiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        if (expectContinue) request.Headers.ExpectContinue = true;
        using var response = await client.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        JsonNode? json = null;
        try { json = text.Length == 0 ? null : JsonNode.Parse(text); } catch (System.Text.Json.JsonException) { }
        return ((int)response.StatusCode, json);
    }

    public static Task<(int Status, JsonNode? Body)> Post(HttpClient client, string path, JsonObject body) => Post(client, path, body.ToJsonString());

    /// <summary>The <c>data:</c> payloads of a server-sent event stream, <c>[DONE]</c> included; <paramref name="started"/> once the server answered 200.</summary>
    public static async Task<List<string>> Events(HttpClient client, string path, JsonObject body, TaskCompletionSource? started = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        started?.TrySetResult();
        var events = new List<string>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line)
            if (line.StartsWith("data: ", StringComparison.Ordinal)) events.Add(line["data: ".Length..]);
        return events;
    }
}
