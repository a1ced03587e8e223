using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Serving;

namespace SharpTune.Tests.Serving;

/// <summary>Every refused request gets OpenAI's error shape and a 4xx; nothing a client sends gives a 5xx or stops the server.</summary>
[Collection(nameof(ServingCollection))]
public class ServerErrorTests(ServingFixture serving)
{
    static string Chat(string fields) => $$"""{"model": "a", "messages": [{"role": "user", "content": "hi"}]{{fields}}}""";

    public static TheoryData<string, string, int, string?> BadRequests => new()
    {
        { "/v1/chat/completions", "{not json", 400, null },
        { "/v1/chat/completions", "", 400, null },
        { "/v1/chat/completions", "[1, 2]", 400, null },
        { "/v1/chat/completions", """{"messages": [{"role": "user", "content": "hi"}]}""", 400, "missing_required_parameter" },
        { "/v1/chat/completions", """{"model": "a"}""", 400, "missing_required_parameter" },
        { "/v1/chat/completions", """{"model": "a", "messages": []}""", 400, "invalid_type" },
        { "/v1/chat/completions", """{"model": "a", "messages": [{"role": "wizard", "content": "hi"}]}""", 400, "invalid_value" },
        { "/v1/chat/completions", """{"model": "a", "messages": [{"role": "user", "content": 7}]}""", 400, "invalid_type" },
        { "/v1/chat/completions", """{"model": "a", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}""", 400, "invalid_value" },
        { "/v1/chat/completions", """{"model": 12, "messages": [{"role": "user", "content": "hi"}]}""", 400, "invalid_type" },
        { "/v1/chat/completions", """{"model": "nobody", "messages": [{"role": "user", "content": "hi"}]}""", 404, "model_not_found" },
        { "/v1/chat/completions", Chat(""", "temperature": "hot" """), 400, "invalid_type" },
        { "/v1/chat/completions", Chat(""", "temperature": 3 """), 400, "invalid_value" },
        { "/v1/chat/completions", Chat(""", "top_p": 0"""), 400, "invalid_value" },
        { "/v1/chat/completions", Chat(""", "max_tokens": 0"""), 400, "invalid_value" },
        { "/v1/chat/completions", Chat(""", "max_tokens": 1.5"""), 400, "invalid_type" },
        { "/v1/chat/completions", Chat(""", "max_tokens": 5000"""), 400, "context_length_exceeded" },
        { "/v1/chat/completions", Chat(""", "stop": [1]"""), 400, "invalid_type" },
        { "/v1/chat/completions", Chat(""", "stop": ["a", "b", "c", "d", "e"]"""), 400, "invalid_value" },
        { "/v1/chat/completions", Chat(""", "seed": "x" """), 400, "invalid_type" },
        { "/v1/chat/completions", Chat(""", "n": 2"""), 400, "invalid_value" },
        { "/v1/chat/completions", Chat(""", "stream": "yes" """), 400, "invalid_type" },
        { "/v1/chat/completions", $$"""{"model": "a", "messages": [{"role": "user", "content": "{{new string('x', 400)}}"}]}""", 400, "context_length_exceeded" },
        { "/v1/completions", """{"model": "a"}""", 400, "missing_required_parameter" },
        { "/v1/completions", """{"model": "a", "prompt": ["x", "y"]}""", 400, "invalid_value" },
        { "/v1/completions", """{"model": "a", "prompt": {"text": "x"}}""", 400, "invalid_type" },
        { "/v1/embeddings", """{"model": "a", "input": "x"}""", 404, "unknown_url" },
        { "/v2/anything", "{}", 404, "unknown_url" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task A_bad_request_gets_a_4xx_in_openais_error_shape(string path, string body, int status, string? code)
    {
        var (got, error) = await Http.Post(serving.Client, path, body);
        Assert.True(got == status, $"{body}: {got} {error?.ToJsonString()}");
        var detail = error!["error"]!;
        Assert.False(string.IsNullOrEmpty(detail["message"]!.GetValue<string>()));
        Assert.Equal("invalid_request_error", detail["type"]!.GetValue<string>());
        if (code is not null) Assert.Equal(code, detail["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_thousand_malformed_bodies_give_no_server_error_and_the_server_still_answers()
    {
        var random = new Random(21);
        string[] valid =
        [
            Chat(""", "max_tokens": 2, "temperature": 0"""),
            """{"model": "b", "prompt": "count 1:", "max_tokens": 2, "stop": ["x"], "seed": 3}""",
        ];
        string[] paths = ["/v1/chat/completions", "/v1/completions"];
        string[] junk = ["null", "true", "-1", "1e999", "\"\"", "[]", "{}", "[[[[", "\"\\ud800\"", "{\"model\":", "NaN", "0x10", "\u0000"];
        var statuses = new Dictionary<int, int>();
        var failures = new List<string>();
        for (int i = 0; i < 1000; i++)
        {
            var bytes = Encoding.UTF8.GetBytes(valid[i % 2]).ToList();
            switch (random.Next(4))
            {
                case 0: // flip bytes
                    for (int k = 0; k < 1 + random.Next(4); k++) bytes[random.Next(bytes.Count)] = (byte)random.Next(256);
                    break;
                case 1: // cut
                    bytes = bytes.Take(random.Next(bytes.Count)).ToList();
                    break;
                case 2: // a field's value replaced by junk
                {
                    string text = Encoding.UTF8.GetString(bytes.ToArray());
                    int colon = text.IndexOf(':', random.Next(text.Length));
                    if (colon < 0) colon = text.IndexOf(':');
                    int end = text.IndexOfAny([',', '}'], colon);
                    text = text[..(colon + 1)] + junk[random.Next(junk.Length)] + text[end..];
                    bytes = Encoding.UTF8.GetBytes(text).ToList();
                    break;
                }
                default: // insert random bytes
                    for (int k = 0; k < 1 + random.Next(6); k++) bytes.Insert(random.Next(bytes.Count + 1), (byte)random.Next(256));
                    break;
            }
            using var content = new ByteArrayContent(bytes.ToArray());
            using var response = await serving.Client.PostAsync(paths[i % 2], content);
            int status = (int)response.StatusCode;
            statuses[status] = statuses.GetValueOrDefault(status) + 1;
            string reply = await response.Content.ReadAsStringAsync();
            if (status >= 500) failures.Add($"{Encoding.UTF8.GetString(bytes.ToArray())} -> {reply}");
            if (status >= 400) Assert.NotNull(JsonNode.Parse(reply)!["error"]);
        }
        Assert.True(statuses.Keys.All(s => s < 500), string.Join(", ", statuses.Select(kv => $"{kv.Key}: {kv.Value}")) + "\n" + string.Join("\n", failures.Take(5)));
        Assert.True(statuses.GetValueOrDefault(400) > 500, string.Join(", ", statuses.Select(kv => $"{kv.Key}: {kv.Value}")));
        var (ok, _) = await Http.Post(serving.Client, "/v1/chat/completions", Chat(""", "max_tokens": 2"""));
        Assert.Equal(200, ok);
    }

    [Fact]
    public async Task A_body_over_the_limit_gets_413()
    {
        string big = Chat($$""", "user": "{{new string('x', 2 << 20)}}" """);
        var (status, error) = await Http.Post(serving.Client, "/v1/chat/completions", big, expectContinue: true);
        Assert.Equal(413, status);
        Assert.Equal("request_too_large", error!["error"]!["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_full_queue_gets_429_and_an_api_key_is_required_when_set()
    {
        await using var server = await OpenAiServer.StartAsync(serving.Host,
            new ServeOptions { Port = 0, MaxBatch = 1, MaxQueue = 0, ApiKey = "sesame" });
        using var client = new HttpClient { BaseAddress = server.Address };
        var (denied, error) = await Http.Post(client, "/v1/completions", """{"model": "a", "prompt": "x", "max_tokens": 2}""");
        Assert.Equal(401, denied);
        Assert.Equal("invalid_api_key", error!["error"]!["code"]!.GetValue<string>());
        var (wrong, _) = await Http.Post(client, "/v1/completions", """{"model": "a", "prompt": "x", "max_tokens": 2}""", apiKey: "open");
        Assert.Equal(401, wrong);

        string slow = """{"model": "a", "prompt": "the river", "max_tokens": 60, "temperature": 0.8}""";
        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Http.Post(client, "/v1/completions", slow, apiKey: "sesame")));
        Assert.All(results, r => Assert.True(r.Status is 200 or 429, $"{r.Status} {r.Body?.ToJsonString()}"));
        Assert.Contains(results, r => r.Status == 200);
        Assert.Contains(results, r => r.Status == 429);
        var limited = results.First(r => r.Status == 429).Body!["error"]!;
        Assert.Equal("rate_limit_exceeded", limited["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task Stopping_lets_the_requests_in_flight_finish()
    {
        var server = await OpenAiServer.StartAsync(serving.Host, new ServeOptions { Port = 0 });
        using var client = new HttpClient { BaseAddress = server.Address };
        var running = Task.WhenAll(Enumerable.Range(0, 3).Select(i => Http.Post(client, "/v1/completions",
            $$"""{"model": "{{new[] { "base", "a", "b" }[i]}}", "prompt": "the river", "max_tokens": 40, "temperature": 0.7, "seed": {{i}}}""")));
        for (int i = 0; i < 200 && server.Batcher!.Load.Running < 3; i++) await Task.Delay(5);
        await server.StopAsync();
        var results = await running;
        Assert.All(results, r => Assert.Equal(200, r.Status));
        Assert.All(results, r => Assert.True(r.Body!["usage"]!["completion_tokens"]!.GetValue<int>() > 0));
        await server.DisposeAsync();
    }
}
