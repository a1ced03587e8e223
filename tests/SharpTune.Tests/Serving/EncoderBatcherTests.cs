using System.Collections.Concurrent;
using SharpTune.Serving;

namespace SharpTune.Tests.Serving;

/// <summary>Requests that wait while the encoder is busy run as one call; each gets its own slice, in order.</summary>
public class EncoderBatcherTests
{
    /// <summary>A model stand-in: records each call's texts, answers each text with its upper case, and holds its first call until released.</summary>
    sealed class Model
    {
        public readonly ConcurrentQueue<IReadOnlyList<string>> Calls = new();
        public readonly ManualResetEventSlim Release = new(false);
        public readonly ManualResetEventSlim Entered = new(false);

        public IReadOnlyList<string> Work(IReadOnlyList<string> texts)
        {
            Calls.Enqueue(texts);
            Entered.Set();
            Release.Wait(TimeSpan.FromSeconds(30));
            return texts.Select(t => t.ToUpperInvariant()).ToList();
        }
    }

    [Fact]
    public async Task Requests_waiting_behind_a_call_join_into_one_and_each_gets_its_slice()
    {
        var batcher = new EncoderBatcher(maxTexts: 5);
        var model = new Model();
        var first = batcher.Run("e", ["a"], model.Work, default);
        Assert.True(model.Entered.Wait(TimeSpan.FromSeconds(30)));
        var second = batcher.Run("e", ["b", "c"], model.Work, default);
        var other = batcher.Run("classify", ["x"], model.Work, default);      // another key never joins
        var third = batcher.Run("e", ["d", "e"], model.Work, default);
        var fourth = batcher.Run("e", ["f", "g"], model.Work, default);        // would pass maxTexts: waits for the next call
        model.Release.Set();

        Assert.Equal(["A"], await first);
        Assert.Equal(["B", "C"], await second);
        Assert.Equal(["D", "E"], await third);
        Assert.Equal(["X"], await other);
        Assert.Equal(["F", "G"], await fourth);
        Assert.Equal([["a"], ["b", "c", "d", "e"], ["x"], ["f", "g"]], model.Calls.ToArray());
    }

    [Fact]
    public async Task A_request_cancelled_while_waiting_is_never_computed_and_a_failing_call_fails_only_its_requests()
    {
        var batcher = new EncoderBatcher(maxTexts: 64);
        var model = new Model();
        var first = batcher.Run("e", ["a"], model.Work, default);
        Assert.True(model.Entered.Wait(TimeSpan.FromSeconds(30)));
        using var gone = new CancellationTokenSource();
        var cancelled = batcher.Run("e", ["lost"], model.Work, gone.Token);
        gone.Cancel();
        model.Release.Set();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.Equal(["A"], await first);
        Assert.DoesNotContain(model.Calls, call => call.Contains("lost"));

        var failing = batcher.Run<string>("e", ["z"], _ => throw new InvalidOperationException("model failed"), default);
        await Assert.ThrowsAsync<InvalidOperationException>(() => failing);
        Assert.Equal(["OK"], await batcher.Run("e", ["ok"], model.Work, default));
    }
}
