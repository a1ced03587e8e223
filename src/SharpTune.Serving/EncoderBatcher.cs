namespace SharpTune.Serving;

/// <summary>
/// Batches concurrent encoder requests: requests for the same work (embeddings, or one task model's classification)
/// that wait while the model is busy run together as one call on their texts, each request then taking its own slice of
/// the results. One call runs at a time (each uses every core); a request runs alone when nothing else waits, so a lone
/// client sees no added delay. A request whose client goes away before its turn is dropped.
/// </summary>
public sealed class EncoderBatcher(int maxTexts)
{
    sealed record Job(string Key, IReadOnlyList<string> Texts, Func<IReadOnlyList<string>, IReadOnlyList<object>> Work,
        TaskCompletionSource<IReadOnlyList<object>> Done);

    readonly object gate = new();
    readonly List<Job> waiting = [];
    bool running;

    /// <summary>Texts one call takes at most when it joins requests (a single request larger than that runs alone).</summary>
    public int MaxTexts { get; } = maxTexts >= 1 ? maxTexts : throw new ArgumentException($"maxTexts must be at least 1, got {maxTexts}");

    /// <summary>
    /// <paramref name="work"/> over <paramref name="texts"/>, possibly joined with other waiting requests of the same
    /// <paramref name="key"/> (whose work must then be the same function of the texts); one result per text, in order.
    /// </summary>
    public async Task<IReadOnlyList<T>> Run<T>(string key, IReadOnlyList<string> texts, Func<IReadOnlyList<string>, IReadOnlyList<T>> work,
        CancellationToken abort) where T : notnull
    {
        var job = new Job(key, texts, all => work(all).Cast<object>().ToList(), new(TaskCreationOptions.RunContinuationsAsynchronously));
        bool start;
        lock (gate)
        {
            waiting.Add(job);
            start = !running;
            running = true;
        }
        if (start) _ = Task.Run(Drain, CancellationToken.None);
        using var registration = abort.Register(() =>
        {
            lock (gate)
                if (!waiting.Remove(job)) return;                            // already running: its result is simply not sent
            job.Done.TrySetCanceled(abort);
        });
        var results = await job.Done.Task;
        return results.Cast<T>().ToList();
    }

    void Drain()
    {
        while (true)
        {
            var group = new List<Job>();
            lock (gate)
            {
                if (waiting.Count == 0)
                {
                    running = false;
                    return;
                }
                int texts = 0;
                foreach (var job in waiting)
                    if (group.Count == 0 || (job.Key == group[0].Key && texts + job.Texts.Count <= MaxTexts))
                    {
                        group.Add(job);
                        texts += job.Texts.Count;
                    }
                waiting.RemoveAll(group.Contains);
            }
            try
            {
                var results = group[0].Work(group.SelectMany(j => j.Texts).ToList());
                int at = 0;
                foreach (var job in group)
                {
                    job.Done.TrySetResult(results.Skip(at).Take(job.Texts.Count).ToList());
                    at += job.Texts.Count;
                }
            }
            catch (Exception e)
            {
                foreach (var job in group) job.Done.TrySetException(e);
            }
        }
    }
}
