using System.Text.Json.Nodes;
using SharpTune.Tests.Cli;

namespace SharpTune.Tests.Serving;

/// <summary>What a client of <c>sharptune serve</c> over a decoder sees: models, completions, chat, streaming, adapters per request.</summary>
[Collection(nameof(ServingCollection))]
public class OpenAiServerTests(ServingFixture serving)
{
    static readonly string[] Prompts = ["the river 3 runs", "count 5:", "hi 7", "once upon a time"];

    static JsonObject Completion(string model, string prompt, int maxTokens) =>
        new() { ["model"] = model, ["prompt"] = prompt, ["max_tokens"] = maxTokens, ["temperature"] = 0 };

    [Fact]
    public async Task Models_lists_the_base_and_every_adapter()
    {
        var response = await serving.Client.GetAsync("/v1/models");
        Assert.Equal(200, (int)response.StatusCode);
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal("list", body["object"]!.GetValue<string>());
        Assert.Equal(["base", "a", "b"], body["data"]!.AsArray().Select(m => m!["id"]!.GetValue<string>()));
    }

    [Fact]
    public async Task Greedy_text_equals_sharptune_generate_for_the_base_and_each_adapter()
    {
        var texts = new Dictionary<string, string>();
        foreach (var (name, model) in new[] { ("base", serving.Model), ("a", serving.Runs["a"]), ("b", serving.Runs["b"]) })
            foreach (string prompt in Prompts.Take(2))
            {
                var (code, output, error) = CliHarness.Run("generate", "--model", model, "--prompt", prompt, "--greedy", "--max-new-tokens", "10", "--json", "--quiet");
                Assert.True(code == 0, error + output);
                var expected = JsonNode.Parse(output.Trim().Split('\n').Last())!;
                var (status, body) = await Http.Post(serving.Client, "/v1/completions", Completion(name, prompt, 10));
                Assert.True(status == 200, body?.ToJsonString());
                var choice = body!["choices"]![0]!;
                Assert.Equal(expected["text"]!.GetValue<string>(), choice["text"]!.GetValue<string>());
                Assert.Equal(expected["finish_reason"]!.GetValue<string>() == "length" ? "length" : "stop", choice["finish_reason"]!.GetValue<string>());
                Assert.Equal(expected["token_ids"]!.AsArray().Count, body["usage"]!["completion_tokens"]!.GetValue<int>());
                texts[$"{name}/{prompt}"] = choice["text"]!.GetValue<string>();
            }
        // The adapters change the model: the request's model really picks one.
        Assert.True(Prompts.Take(2).Any(p => texts[$"a/{p}"] != texts[$"base/{p}"]), "adapter a generates what the base generates");
    }

    [Fact]
    public async Task Concurrent_requests_over_mixed_adapters_each_get_what_they_get_alone()
    {
        var requests = Enumerable.Range(0, 9).Select(i => (Model: new[] { "base", "a", "b" }[i % 3], Prompt: Prompts[i % Prompts.Length], Tokens: 6 + i)).ToList();
        var alone = new List<string>();
        foreach (var r in requests)
        {
            var (status, body) = await Http.Post(serving.Client, "/v1/completions", Completion(r.Model, r.Prompt, r.Tokens));
            Assert.Equal(200, status);
            alone.Add(body!["choices"]![0]!["text"]!.GetValue<string>());
        }
        // Together: rows join and leave the running batches as they start and end (different lengths, prompts and adapters).
        var together = await Task.WhenAll(requests.Select(async r =>
        {
            var (status, body) = await Http.Post(serving.Client, "/v1/completions", Completion(r.Model, r.Prompt, r.Tokens));
            Assert.Equal(200, status);
            return body!["choices"]![0]!["text"]!.GetValue<string>();
        }));
        Assert.Equal(alone, together);
    }

    [Fact]
    public async Task Chat_streams_the_same_text_as_it_answers_whole_with_usage()
    {
        var request = new JsonObject
        {
            ["model"] = "a", ["temperature"] = 0, ["max_tokens"] = 12,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi 3" }),
        };
        var (status, whole) = await Http.Post(serving.Client, "/v1/chat/completions", request);
        Assert.True(status == 200, whole?.ToJsonString());
        Assert.Equal("chat.completion", whole!["object"]!.GetValue<string>());
        var message = whole["choices"]![0]!["message"]!;
        Assert.Equal("assistant", message["role"]!.GetValue<string>());
        var usage = whole["usage"]!;
        Assert.Equal(usage["prompt_tokens"]!.GetValue<int>() + usage["completion_tokens"]!.GetValue<int>(), usage["total_tokens"]!.GetValue<int>());

        var streaming = (JsonObject)request.DeepClone();
        streaming["stream"] = true;
        streaming["stream_options"] = new JsonObject { ["include_usage"] = true };
        var events = await Http.Events(serving.Client, "/v1/chat/completions", streaming);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c["object"]!.GetValue<string>()));
        string streamed = string.Concat(chunks.Where(c => c["choices"]!.AsArray().Count > 0)
            .Select(c => c["choices"]![0]!["delta"]!["content"]?.GetValue<string>() ?? ""));
        Assert.Equal(message["content"]!.GetValue<string>(), streamed);
        Assert.Equal(whole["choices"]![0]!["finish_reason"]!.GetValue<string>(),
            chunks.Last(c => c["choices"]!.AsArray().Count > 0)["choices"]![0]!["finish_reason"]!.GetValue<string>());
        Assert.Equal(usage.ToJsonString(), chunks[^1]["usage"]!.ToJsonString());
    }

    [Fact]
    public async Task A_stop_string_cuts_the_text_where_it_begins_streamed_or_not()
    {
        var (_, free) = await Http.Post(serving.Client, "/v1/completions", Completion("b", "count 2:", 16));
        string text = free!["choices"]![0]!["text"]!.GetValue<string>();
        Assert.True(text.Length >= 4, $"too short to cut: '{text}'");
        string stop = text.Substring(text.Length / 2, 2);
        string expected = text[..text.IndexOf(stop, StringComparison.Ordinal)];

        var request = Completion("b", "count 2:", 16);
        request["stop"] = new JsonArray(stop, "\u0001never");
        var (status, cut) = await Http.Post(serving.Client, "/v1/completions", request);
        Assert.Equal(200, status);
        Assert.Equal(expected, cut!["choices"]![0]!["text"]!.GetValue<string>());
        Assert.Equal("stop", cut["choices"]![0]!["finish_reason"]!.GetValue<string>());

        request["stream"] = true;
        var events = await Http.Events(serving.Client, "/v1/completions", request);
        Assert.Equal(expected, string.Concat(events[..^1].Select(e => JsonNode.Parse(e)!["choices"]![0]!["text"]!.GetValue<string>())));
    }

    [Fact]
    public async Task A_client_that_goes_away_stops_its_generation()
    {
        var request = new JsonObject { ["model"] = "base", ["prompt"] = "the", ["max_tokens"] = 80, ["temperature"] = 0.9, ["stream"] = true };
        using (var cancel = new CancellationTokenSource())
        {
            using var message = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(request.ToJsonString()) };
            using var response = await serving.Client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
            Assert.StartsWith("data: ", await reader.ReadLineAsync(cancel.Token));
            cancel.Cancel();
        }
        // The row leaves the batch before its next step.
        for (int i = 0; i < 100 && serving.Server.Batcher!.Load.Running > 0; i++) await Task.Delay(20);
        Assert.Equal(0, serving.Server.Batcher!.Load.Running);
        var (status, _) = await Http.Post(serving.Client, "/v1/completions", Completion("base", "the", 2));
        Assert.Equal(200, status);
    }
}
