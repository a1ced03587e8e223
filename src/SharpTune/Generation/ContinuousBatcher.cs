using SharpTune.Models.Decoders;
using SharpTune.Tokenization.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Generation;

/// <summary>
/// Continuous batching at the decode step (as Orca and vLLM schedule): requests join the running batch of their model
/// between steps and leave it as soon as they finish or their client goes away, so a long answer never holds a short one
/// back. One thread runs every forward pass. A newcomer's prompt is computed on its own, then its cache is left-padded
/// to the batch's length and joined (<see cref="KeyValueCache.Join"/>); the mask hides the padding, positions count real
/// tokens only, as <see cref="TextGenerator"/> does for left-padded prompts. Each request samples with its own
/// <see cref="TokenSampler"/> (its temperature, top-p, seed). Requests over different models (adapters sharing one base)
/// run as one batch per model, stepped in turn. Where the model has a step decoder (<see cref="IStepDecoding"/>), a
/// batch decodes on it instead: each row keeps its own keys and values, so joining and leaving copy no padding.
/// </summary>
public sealed class ContinuousBatcher : IDisposable
{
    readonly object gate = new();
    readonly Queue<DecodeRequest> pending = new();
    readonly List<Batch> batches = [];
    readonly Thread loop;
    readonly TaskCompletionSource drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    bool accepting = true, disposed;
    int running;

    /// <param name="maxBatch">Rows decoded at once, over all models.</param>
    /// <param name="maxQueue">Requests waiting to join; one more is refused with <see cref="QueueFullException"/>.</param>
    public ContinuousBatcher(int maxBatch = 16, int maxQueue = 64)
    {
        if (maxBatch < 1) throw new ArgumentException($"--max-batch must be at least 1, got {maxBatch}");
        if (maxQueue < 0) throw new ArgumentException($"--max-queue must be 0 or more, got {maxQueue}");
        MaxBatch = maxBatch;
        MaxQueue = maxQueue;
        loop = new Thread(Run) { IsBackground = true, Name = "sharptune-decode" };
        loop.Start();
    }

    public int MaxBatch { get; }
    public int MaxQueue { get; }

    /// <summary>
    /// Whether a batch decodes on its model's step decoder (<see cref="IStepDecoding"/>) where the model offers one (the
    /// default), as <see cref="TextGenerator.UseStepDecoder"/>; false steps every batch with <see cref="ICausalLanguageModel.Forward"/>.
    /// </summary>
    public bool UseStepDecoder { get; init; } = true;

    /// <summary>Requests decoding now and waiting to join.</summary>
    public (int Running, int Waiting) Load
    {
        get { lock (gate) return (running, pending.Count); }
    }

    /// <summary>Queues <paramref name="request"/>; the task ends with its sequence, or is cancelled with the request's token.</summary>
    /// <exception cref="QueueFullException">Too many requests wait already.</exception>
    public Task<DecodeResult> Submit(DecodeRequest request)
    {
        request.Options.Validate();
        if (request.Options.StopStrings.Count > 0 && request.Tokenizer is null) throw new ArgumentException("stop strings need the request's tokenizer");
        int context = request.Model.Info.ContextLength;
        if (request.Prompt.Count == 0) throw new ArgumentException("the prompt is empty: give at least one token");
        if (request.Prompt.Count >= context) throw new ArgumentException($"the prompt has {request.Prompt.Count} tokens; the model's context is {context}");
        lock (gate)
        {
            if (!accepting) throw new ObjectDisposedException(nameof(ContinuousBatcher), "the server is shutting down");
            if (pending.Count >= MaxQueue + Math.Max(0, MaxBatch - running)) throw new QueueFullException(MaxQueue);
            pending.Enqueue(request);
            Monitor.Pulse(gate);
        }
        return request.Completion.Task;
    }

    /// <summary>Stops taking requests and completes when every request already taken has finished.</summary>
    public Task DrainAsync()
    {
        lock (gate)
        {
            accepting = false;
            if (pending.Count == 0 && running == 0) drained.TrySetResult();
            Monitor.Pulse(gate);
        }
        return drained.Task;
    }

    void Run()
    {
        using var noGrad = no_grad();
        // Prompts run through the modules on libtorch's threads; steps on a step decoder run on the block kernels' own
        // threads, which libtorch's OpenMP threads, spinning after a parallel operation, would take the cores from (as
        // TextGenerator, which narrows libtorch to one thread after the prompt). The count is set per phase.
        int torchThreads = get_num_threads(), current = torchThreads;
        void Threads(int count)
        {
            if (count == current) return;
            set_num_threads(count);
            current = count;
        }
        try
        {
        while (true)
        {
            var admitted = new List<DecodeRequest>();
            lock (gate)
            {
                if (!disposed && pending.Count == 0 && running == 0) Threads(torchThreads);   // idle: the process's count back
                while (!disposed && pending.Count == 0 && running == 0) Monitor.Wait(gate);
                if (disposed) break;
                while (pending.Count > 0 && running + admitted.Count < MaxBatch) admitted.Add(pending.Dequeue());
                running += admitted.Count;
            }
            if (admitted.Count > 0) Threads(torchThreads);
            foreach (var request in admitted) Admit(request);
            foreach (var batch in batches.ToList())
            {
                Threads(batch.Stepping ? 1 : torchThreads);
                Step(batch);
                if (batch.Rows.Count == 0) { batches.Remove(batch); batch.Dispose(); }
            }
        }
        }
        finally
        {
            Threads(torchThreads);
        }
        foreach (var batch in batches) batch.Fail(new ObjectDisposedException(nameof(ContinuousBatcher)));
        lock (gate) foreach (var request in pending) request.Completion.TrySetCanceled();
    }

    void Finished(int rows)
    {
        lock (gate)
        {
            running -= rows;
            if (!accepting && pending.Count == 0 && running == 0) drained.TrySetResult();
        }
    }

    /// <summary>Computes the prompt, samples the first token and, when the request goes on, joins its model's batch.</summary>
    void Admit(DecodeRequest request)
    {
        if (request.Cancellation.IsCancellationRequested) { request.Completion.TrySetCanceled(request.Cancellation); Finished(1); return; }
        Row? row = null;
        KeyValueCache? cache = null;
        Batch? batch = null;
        bool fresh = false;
        try
        {
            row = new Row(request);
            int length = request.Prompt.Count;
            using var scope = NewDisposeScope();
            batch = request.RunsAlone ? null : batches.FirstOrDefault(b => ReferenceEquals(b.Model, request.Model) && !b.Alone);
            fresh = batch is null;
            batch ??= new Batch(request.Model, request.RunsAlone, UseStepDecoder);
            // A short prompt is computed on the batch's step decoder, as TextGenerator computes it, so a request gives the
            // tokens `sharptune generate` gives for the same prompt; longer ones by the model's forward, then joined.
            if (batch.Prefill(row) is { } prefilled)
            {
                if (fresh) batches.Add(batch);
                if (!row.Take(prefilled[0]))
                {
                    Leave(batch, row);
                    Finished(1);
                    row.Complete();
                }
                return;
            }
            cache = request.Model.NewCache();
            var ids = tensor(request.Prompt.Select(i => (long)i).ToArray(), [1, length]);
            var mask = ones(1, length, ScalarType.Int64);
            var positions = arange(length, dtype: ScalarType.Int64).unsqueeze(0);
            var logits = request.Model.ForwardLast(ids, mask, positions, cache);          // (1, V)
            if (!row.Take(logits[0]))
            {
                if (fresh) batch.Dispose();
                cache.Dispose();
                Finished(1);
                row.Complete();
                return;
            }
            if (fresh) batches.Add(batch);
            batch.Join(row, cache, mask, tensor(new long[] { length }, [1, 1]));
            cache = null;
        }
        catch (Exception e)
        {
            cache?.Dispose();
            if (batch is not null)
            {
                if (row is not null) Leave(batch, row);
                if (fresh && batch.Rows.Count == 0 && !batches.Contains(batch)) batch.Dispose();   // made here, never joined
            }
            request.Completion.TrySetException(e);
            Finished(1);
        }
    }

    /// <summary>Takes <paramref name="row"/> out of <paramref name="batch"/>; a batch it leaves empty leaves the batcher.</summary>
    void Leave(Batch batch, Row row)
    {
        if (batch.Rows.Contains(row)) batch.Keep(batch.Rows.Except([row]).ToList());
        if (batch.Rows.Count == 0 && batches.Remove(batch)) batch.Dispose();
    }

    /// <summary>One decode step of a batch: a token for every row, then the finished and cancelled rows leave.</summary>
    void Step(Batch batch)
    {
        var done = new List<Row>();
        try
        {
            var leaving = batch.Rows.Where(r => r.Request.Cancellation.IsCancellationRequested).ToList();
            foreach (var row in leaving) { row.Request.Completion.TrySetCanceled(row.Request.Cancellation); row.Dispose(); }
            if (leaving.Count > 0) { batch.Keep(batch.Rows.Except(leaving).ToList()); Finished(leaving.Count); }
            if (batch.Rows.Count == 0) return;

            using (var scope = NewDisposeScope())
            {
                var logits = batch.Forward();                                             // (B, 1, V)
                for (int b = 0; b < batch.Rows.Count; b++)
                    if (!batch.Rows[b].Take(logits[b, 0])) done.Add(batch.Rows[b]);
            }
            if (done.Count > 0)
            {
                batch.Keep(batch.Rows.Except(done).ToList());
                Finished(done.Count);
                foreach (var row in done) row.Complete();    // after the count: a caller that sees its result sees the batcher's load without it
            }
        }
        catch (Exception e)
        {
            Finished(batch.Rows.Count);
            foreach (var row in done) row.Complete();
            batch.Fail(e);
        }
    }

    public void Dispose()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            accepting = false;
            Monitor.Pulse(gate);
        }
        loop.Join();
        foreach (var batch in batches) batch.Dispose();
        batches.Clear();
    }

    /// <summary>One request's state: its sampler, what it has generated, its stop-string watch.</summary>
    sealed class Row(DecodeRequest request) : IDisposable
    {
        readonly TokenSampler sampler = new(request.Options);
        readonly List<int> generated = [];
        readonly HashSet<int> seen = [.. request.Prompt];
        readonly StopStringWatch? watch = request.Options.StopStrings.Count == 0 ? null : new StopStringWatch(request.Options.StopStrings);
        readonly DecodeStream? stream = request.Options.StopStrings.Count == 0 ? null : request.Tokenizer!.CreateDecodeStream();
        int sampled, length = request.Prompt.Count;

        public DecodeRequest Request => request;
        public int LastToken { get; private set; }

        DecodeResult? result;

        /// <summary>Samples from this row's logits (V); false when the request has finished (<see cref="Complete"/> then ends its task).</summary>
        public bool Take(Tensor logits)
        {
            using var scope = NewDisposeScope();
            var options = request.Options;
            int token = options.Greedy && options.RepetitionPenalty == 1.0
                ? (int)logits.argmax().item<long>()
                : (int)sampler.Next(logits.unsqueeze(0), [seen]).item<long>();
            sampled++;
            FinishReason? finish = null;
            if (options.StopTokens.Contains(token)) finish = FinishReason.StopToken;
            else
            {
                generated.Add(token);
                seen.Add(token);
                length++;
                LastToken = token;
                try { request.OnToken?.Invoke(token); }
                catch (Exception) { } // a listener's failure (a closed stream) must not stop the other rows; cancellation ends this one
                if (watch is not null && watch.Append(stream!.Next(token))) finish = FinishReason.StopString;
                else if (length >= request.Model.Info.ContextLength) finish = FinishReason.ContextFull;
                else if (sampled >= options.MaxNewTokens) finish = FinishReason.Length;
            }
            if (finish is null) return true;
            var tokens = finish == FinishReason.StopString ? generated.Take(watch!.TokensBeforeStop).ToList() : generated;
            result = new DecodeResult(new GeneratedSequence(tokens, finish.Value), request.Prompt.Count);
            Dispose();
            return false;
        }

        /// <summary>Ends the request's task with the sequence <see cref="Take"/> finished.</summary>
        public void Complete()
        {
            if (result is not null) request.Completion.TrySetResult(result);
        }

        public void Dispose() => sampler.Dispose();
    }

    /// <summary>
    /// The running rows of one model: on the model's step decoder (each row its own keys and values), or a shared cache,
    /// the mask over its positions and each row's next position.
    /// </summary>
    sealed class Batch(ICausalLanguageModel model, bool alone, bool stepping) : IDisposable
    {
        StepDecoder? stepper;
        KeyValueCache? cache;
        Tensor? mask;                      // (B, L) 1 where a row has a real cached token
        Tensor? positions;                 // (B, 1) the position of each row's next token

        public ICausalLanguageModel Model => model;
        public bool Alone => alone;

        /// <summary>Whether the batch decodes on a step decoder (no libtorch operation in its steps but the sampling).</summary>
        public bool Stepping => stepper is not null;
        public List<Row> Rows { get; } = [];

        /// <summary>
        /// Adds <paramref name="row"/> computed from its prompt on the step decoder and returns its last position's logits
        /// (1, V), where the batch decodes on one and the prompt is short enough (<see cref="StepDecoder.PrefillLimit"/>);
        /// else null, and nothing changes but that an empty stepping batch now holds its (empty) step decoder.
        /// </summary>
        public Tensor? Prefill(Row row)
        {
            if (!stepping || cache is not null) return null;
            stepper ??= (model as IStepDecoding)?.CreateStepDecoder();
            var request = row.Request;
            if (stepper is null || request.Prompt.Count > stepper.PrefillLimit) return null;
            int capacity = Math.Min(model.Info.ContextLength, request.Prompt.Count + request.Options.MaxNewTokens);
            var logits = stepper.Prefill([request.Prompt], capacity);
            Rows.Add(row);
            return logits;
        }

        public void Join(Row row, KeyValueCache rowCache, Tensor rowMask, Tensor rowPosition)
        {
            var request = row.Request;
            int capacity = Math.Min(model.Info.ContextLength, request.Prompt.Count + request.Options.MaxNewTokens);
            if (stepper is null && cache is null && stepping) stepper = StepDecoder.Start(model, rowCache, rowMask, capacity);
            else stepper?.Join(rowCache, rowMask, capacity);                  // a step decoder made by Prefill joins the cache too
            if (stepper is not null)
            {
                rowCache.Dispose();
                Rows.Add(row);
                return;
            }
            if (cache is null)
            {
                (cache, mask, positions) = (rowCache, rowMask.DetachFromDisposeScope(), rowPosition.DetachFromDisposeScope());
            }
            else
            {
                long length = Math.Max(mask!.shape[1], rowMask.shape[1]);
                Tensor Pad(Tensor m) => m.shape[1] == length ? m : nn.functional.pad(m, [length - m.shape[1], 0]);
                var joinedMask = cat([Pad(mask), Pad(rowMask)], 0).DetachFromDisposeScope();
                var joinedPositions = cat([positions!, rowPosition], 0).DetachFromDisposeScope();
                cache.Join(rowCache);
                rowCache.Dispose();
                mask.Dispose(); positions!.Dispose();
                (mask, positions) = (joinedMask, joinedPositions);
            }
            Rows.Add(row);
        }

        /// <summary>Logits (B, 1, V) of every row's last token; the mask and positions move on by one.</summary>
        public Tensor Forward()
        {
            if (stepper is not null) return stepper.Step(Rows.Select(r => (long)r.LastToken).ToArray()).unsqueeze(1);
            var input = tensor(Rows.Select(r => (long)r.LastToken).ToArray(), [Rows.Count, 1]);
            var grown = cat([mask!, ones(Rows.Count, 1, ScalarType.Int64)], 1);
            var logits = model.Forward(input, grown, positions, cache);
            var next = positions! + 1;
            mask!.Dispose(); positions!.Dispose();
            mask = grown.DetachFromDisposeScope();
            positions = next.DetachFromDisposeScope();
            return logits;
        }

        /// <summary>Keeps <paramref name="rows"/> (in order), and drops the cached columns that only padding of the rows gone filled.</summary>
        public void Keep(List<Row> rows)
        {
            if (rows.Count == Rows.Count) return;
            if (rows.Count == 0) { Rows.Clear(); return; }
            if (stepper is not null)
            {
                stepper.Keep(rows.Select(r => Rows.IndexOf(r)).ToList());
                Rows.Clear();
                Rows.AddRange(rows);
                return;
            }
            using var scope = NewDisposeScope();
            var index = tensor(rows.Select(r => (long)Rows.IndexOf(r)).ToArray());
            cache!.Select(index);
            var keptMask = mask!.index_select(0, index);
            var keptPositions = positions!.index_select(0, index);
            // Columns no row attends to at the left: the padding of a longer row that has left.
            long unused = keptMask.sum(0).gt(0).to_type(ScalarType.Int64).argmax().item<long>();
            if (unused > 0)
            {
                cache.DropLeft(unused);
                keptMask = keptMask.narrow(1, unused, keptMask.shape[1] - unused);
            }
            mask.Dispose(); positions.Dispose();
            mask = keptMask.contiguous().DetachFromDisposeScope();
            positions = keptPositions.DetachFromDisposeScope();
            Rows.Clear();
            Rows.AddRange(rows);
        }

        public void Fail(Exception e)
        {
            foreach (var row in Rows) { row.Request.Completion.TrySetException(e); row.Dispose(); }
            Rows.Clear();
        }

        public void Dispose()
        {
            stepper?.Dispose();
            cache?.Dispose();
            mask?.Dispose();
            positions?.Dispose();
        }
    }
}
