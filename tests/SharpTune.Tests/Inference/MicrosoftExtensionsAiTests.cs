using Microsoft.Extensions.AI;
using SharpTune.Generation;
using SharpTune.Inference;
using SharpTune.ModelFolders;
using SharpTune.Tests.Serving;

namespace SharpTune.Tests.Inference;

/// <summary>A fine-tuned run as Microsoft.Extensions.AI's <see cref="IChatClient"/>, in process: what the server answers, with no server.</summary>
[Collection(nameof(ServingCollection))]
public class SharpTuneChatClientTests(ServingFixture serving)
{
    [Fact]
    public async Task A_run_folder_answers_as_the_server_does_whole_and_streamed()
    {
        using IChatClient client = SharpTuneChatClient.Load(serving.Runs["a"]);
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 10 };
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi 5")], options);

        var (status, body) = await Http.Post(serving.Client, "/v1/chat/completions", new System.Text.Json.Nodes.JsonObject
        {
            ["model"] = "a", ["temperature"] = 0, ["max_tokens"] = 10,
            ["messages"] = new System.Text.Json.Nodes.JsonArray(new System.Text.Json.Nodes.JsonObject { ["role"] = "user", ["content"] = "hi 5" }),
        });
        Assert.Equal(200, status);
        Assert.Equal(body!["choices"]![0]!["message"]!["content"]!.GetValue<string>(), response.Text);
        Assert.Equal(body["usage"]!["completion_tokens"]!.GetValue<long>(), response.Usage!.OutputTokenCount);

        var updates = await client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "hi 5")], options).ToListAsync();
        Assert.Equal(response.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(response.FinishReason, updates[^1].FinishReason);
    }

    [Fact]
    public async Task Clients_of_two_adapters_share_one_batcher_and_the_hosts_base()
    {
        using var batcher = new ContinuousBatcher();
        Assert.True(serving.Host.TryGet("b", out var b));
        Assert.True(b.SharedTensors > 0, "adapter b shares no tensor with the base");
        using var first = new SharpTuneChatClient(serving.Host.Base, "base", batcher);
        using var second = new SharpTuneChatClient(b.Model, "b", batcher);
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 6 };
        var together = await Task.WhenAll(first.GetResponseAsync("hi 2", options), second.GetResponseAsync("hi 2", options));
        Assert.Equal((await first.GetResponseAsync("hi 2", options)).Text, together[0].Text);
        Assert.Equal((await second.GetResponseAsync("hi 2", options)).Text, together[1].Text);
    }

    [Fact]
    public void Adapters_point_their_frozen_weights_at_the_bases_tensors()
    {
        var host = serving.Host.Base.Model.Module.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.True(serving.Host.TryGet("a", out var a));
        var adapter = a.Model.Model.Module.named_parameters().ToList();
        var shared = adapter.Where(p => host.TryGetValue(p.name, out var h) && AdapterHost.SharesStorage(h, p.parameter)).Select(p => p.name).ToList();
        // Every parameter of the adapter run is the base's own tensor except the LoRA matrices it trained.
        Assert.Equal(adapter.Where(p => !p.name.Contains("lora_")).Select(p => p.name), shared);
        Assert.Equal(shared.Count, a.SharedTensors);
        Assert.Contains(adapter, p => p.name.Contains("lora_"));
        Assert.NotNull(LanguageModelFolder.Resolve(serving.Runs["a"]));
    }
}

/// <summary>An encoder as <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/>, in process: the server's embeddings.</summary>
[Collection(nameof(EncoderServingCollection))]
public class SharpTuneEmbeddingGeneratorTests(EncoderServingFixture serving)
{
    [Fact]
    public async Task The_generator_gives_the_servers_embeddings_with_token_usage()
    {
        using IEmbeddingGenerator<string, Embedding<float>> generator = SharpTuneEmbeddingGenerator.Load(serving.Model);
        var generated = await generator.GenerateAsync(["the movie was good", "food is poor"]);
        var (status, body) = await Http.Post(serving.Client, "/v1/embeddings", """{"model": "tiny", "input": ["the movie was good", "food is poor"]}""");
        Assert.Equal(200, status);
        for (int i = 0; i < 2; i++)
            Assert.Equal(body!["data"]![i]!["embedding"]!.AsArray().Select(v => v!.GetValue<float>()), generated[i].Vector.ToArray());
        Assert.Equal(body!["usage"]!["prompt_tokens"]!.GetValue<long>(), generated.Usage!.InputTokenCount);
        Assert.Equal(1.0, Math.Sqrt(generated[0].Vector.ToArray().Sum(v => (double)v * v)), 5);
    }
}
