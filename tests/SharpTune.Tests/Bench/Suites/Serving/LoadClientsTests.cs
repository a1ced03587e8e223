using SharpTune.Bench.Suites.Serving;
using SharpTune.Tests.Serving;

namespace SharpTune.Tests.Bench.Suites.Serving;

/// <summary>The serve-load bench's clients against the serving tests' server: what they count is what the server answered.</summary>
[Collection(nameof(ServingCollection))]
public class LoadClientsTests(ServingFixture serving)
{
    [Fact]
    public void Percentiles_interpolate_between_ranks_and_skip_missing_values()
    {
        double[] values = [5, 1, double.NaN, 3, 2, 4];
        Assert.Equal(3, LoadClients.Percentile(values, 50), 12);
        Assert.Equal(4.8, LoadClients.Percentile(values, 95), 12);
        Assert.Equal(1, LoadClients.Percentile(values, 0), 12);
        Assert.True(double.IsNaN(LoadClients.Percentile([double.NaN], 50)));
    }

    [Fact]
    public async Task A_streamed_chat_counts_the_servers_completion_tokens_and_a_refused_one_is_a_failure()
    {
        using var http = LoadClients.Create(serving.Server.Address);
        var timing = await LoadClients.Chat(http, "a", "hi 3", maxTokens: 5, seed: 1);
        Assert.Null(timing.Error);
        Assert.InRange(timing.CompletionTokens, 1, 5);
        Assert.InRange(timing.FirstTokenSeconds, 0, timing.Seconds);

        var refused = await LoadClients.Chat(http, "no-such-model", "hi 3", maxTokens: 5, seed: 1);
        Assert.StartsWith("HTTP 404", refused.Error);
        Assert.Equal(0, refused.CompletionTokens);
    }

    [Fact]
    public void Every_client_sends_its_requests_and_every_timing_comes_back()
    {
        using var http = LoadClients.Create(serving.Server.Address);
        var sent = new System.Collections.Concurrent.ConcurrentBag<(int, int)>();
        var (timings, seconds) = LoadClients.Run(3, 2, (client, request) =>
        {
            sent.Add((client, request));
            return LoadClients.Chat(http, request % 2 == 0 ? "a" : "b", $"hi {client}", maxTokens: 3, seed: client);
        });
        Assert.Equal(6, timings.Count);
        Assert.All(timings, t => Assert.Null(t.Error));
        Assert.Equal(Enumerable.Range(0, 3).SelectMany(c => new[] { (c, 0), (c, 1) }).Order(), sent.Order());
        Assert.True(seconds >= timings.Max(t => t.Seconds));
    }
}
