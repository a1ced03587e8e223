using SharpTune.Generation;
using SharpTune.Models.Decoders;
using SharpTune.Tests.Models.Decoders;

namespace SharpTune.Tests.Generation;

/// <summary>
/// Continuous batching: requests that join a running batch (their cache left-padded and joined) and leave it (rows
/// dropped, unused padding trimmed) get the tokens they get decoded alone, in every family; cancellation and a full
/// queue end a request without disturbing the others.
/// </summary>
public class ContinuousBatcherTests
{
    static IReadOnlyList<int> Prompt(int length, int seed) =>
        Enumerable.Range(0, length).Select(i => 4 + (i * 31 + seed * 17) % (TinyDecoders.Vocab - 4)).ToList();

    /// <summary>Submit refuses at once (it throws before returning a task).</summary>
    static void Refused<T>(Action submit) where T : Exception => Assert.Throws<T>(submit);

    static GenerationOptions Greedy(int tokens) => new() { Greedy = true, MaxNewTokens = tokens };

    public static TheoryData<string, bool> FamiliesAndPaths
    {
        get
        {
            var data = new TheoryData<string, bool>();
            foreach (string family in TinyDecoders.Families) { data.Add(family, true); data.Add(family, false); }
            return data;
        }
    }

    /// <param name="stepDecoder">Both the batcher and the lone generator decode on the model's step decoder (where it has one), or both on its forward.</param>
    [Theory]
    [MemberData(nameof(FamiliesAndPaths))]
    public async Task Rows_joining_and_leaving_get_the_tokens_they_get_alone(string family, bool stepDecoder)
    {
        using var model = TinyDecoders.Create(family);
        // Prompts of different lengths and answers of different lengths, so rows join behind longer and shorter caches
        // and leave while others go on; a sampled request rides along with its own seed.
        var requests = Enumerable.Range(0, 7).Select(i => (Prompt: Prompt(2 + i * 3 % 11, i), Options: Greedy(3 + i * 2 % 9))).ToList();
        requests.Add((Prompt(5, 9), new GenerationOptions { Temperature = 0.9, TopK = 0, TopP = 0.95, Seed = 5, MaxNewTokens = 8 }));
        var alone = requests.Select(r => new TextGenerator(model, r.Options) { UseStepDecoder = stepDecoder }.Generate([r.Prompt])[0].TokenIds).ToList();

        using var batcher = new ContinuousBatcher(maxBatch: 4, maxQueue: 16) { UseStepDecoder = stepDecoder };
        var results = await Task.WhenAll(requests.Select(r => batcher.Submit(new DecodeRequest { Model = model, Prompt = r.Prompt, Options = r.Options })));
        for (int i = 0; i < requests.Count; i++) Assert.Equal(alone[i], results[i].Sequence.TokenIds);
        Assert.Equal((0, 0), batcher.Load);
    }

    [Fact]
    public async Task Requests_over_two_models_run_side_by_side_each_on_its_own()
    {
        using var first = TinyDecoders.Create("qwen2", seed: 7);
        using var second = TinyDecoders.Create("qwen2", seed: 8);
        var prompt = Prompt(6, 1);
        var expected = new[] { first, second }.Select(m => new TextGenerator(m, Greedy(10)).Generate([prompt])[0].TokenIds).ToList();
        Assert.NotEqual(expected[0], expected[1]);
        using var batcher = new ContinuousBatcher();
        var results = await Task.WhenAll(Enumerable.Range(0, 6).Select(i =>
            batcher.Submit(new DecodeRequest { Model = i % 2 == 0 ? first : second, Prompt = prompt, Options = Greedy(10) })));
        for (int i = 0; i < 6; i++) Assert.Equal(expected[i % 2], results[i].Sequence.TokenIds);
    }

    [Fact]
    public async Task A_cancelled_request_leaves_before_the_next_step_and_the_others_go_on()
    {
        using var model = TinyDecoders.Create("llama");
        using var batcher = new ContinuousBatcher();
        using var cancel = new CancellationTokenSource();
        int seen = 0;
        var cancelled = batcher.Submit(new DecodeRequest
        {
            Model = model, Prompt = Prompt(4, 1), Options = Greedy(200), Cancellation = cancel.Token,
            OnToken = _ => { if (++seen == 3) cancel.Cancel(); },
        });
        var other = batcher.Submit(new DecodeRequest { Model = model, Prompt = Prompt(7, 2), Options = Greedy(12) });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.Equal(3, seen);
        Assert.Equal(new TextGenerator(model, Greedy(12)).Generate([Prompt(7, 2)])[0].TokenIds, (await other).Sequence.TokenIds);
    }

    [Fact]
    public async Task A_full_queue_refuses_and_a_drained_batcher_takes_nothing_more()
    {
        using var model = TinyDecoders.Create("gpt2");
        using var batcher = new ContinuousBatcher(maxBatch: 1, maxQueue: 1);
        using var hold = new ManualResetEventSlim();
        var first = batcher.Submit(new DecodeRequest { Model = model, Prompt = Prompt(3, 1), Options = Greedy(4), OnToken = _ => hold.Wait() });
        for (int i = 0; i < 200 && batcher.Load.Running == 0; i++) await Task.Delay(5);
        var second = batcher.Submit(new DecodeRequest { Model = model, Prompt = Prompt(3, 2), Options = Greedy(2) });
        Refused<QueueFullException>(() => batcher.Submit(new DecodeRequest { Model = model, Prompt = Prompt(3, 3), Options = Greedy(2) }));
        Refused<ArgumentException>(() => batcher.Submit(new DecodeRequest { Model = model, Prompt = Prompt(40, 3), Options = Greedy(2) }));
        var drained = batcher.DrainAsync();
        Refused<ObjectDisposedException>(() => batcher.Submit(new DecodeRequest { Model = model, Prompt = Prompt(3, 4), Options = Greedy(2) }));
        hold.Set();
        await drained;
        Assert.Equal(4, (await first).Sequence.TokenIds.Count);
        Assert.Equal(2, (await second).Sequence.TokenIds.Count);
    }
}
