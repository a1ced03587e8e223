using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace SharpTune.Quantization;

/// <summary>
/// A persistent pool that splits a product's output rows over threads. A 0.5B decoder issues about 170 products per
/// token, each a few tens of microseconds, so waking threads per product (Parallel.For) would cost as much as the
/// work: workers spin for a short while after each job, then sleep on a semaphore. The calling thread takes chunks
/// too. One job at a time: a caller that finds the pool busy runs its job alone, so nested or concurrent products
/// never wait on each other.
/// </summary>
sealed unsafe class KernelThreadPool
{
    /// <summary>How long an idle worker spins for the next job before sleeping.</summary>
    static readonly long SpinTicks = Stopwatch.Frequency / 5000; // 200 µs

    readonly object gate = new();
    readonly List<Worker> workers = [];
    int threads = Environment.ProcessorCount;

    // The job: body(state, chunk) for chunk in [0, chunks), claimed through next.
    delegate*<void*, int, void> body;
    void* state;
    int chunks, next, running;
    volatile int generation;
    Exception? failure;

    public static KernelThreadPool Shared { get; } = new();

    /// <summary>Threads a job uses, the caller's included (Environment.ProcessorCount by default).</summary>
    public int Threads
    {
        get => threads;
        set => threads = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), $"kernel threads must be at least 1, got {value}");
    }

    /// <summary>Runs body(state, c) for every chunk c in [0, chunks); returns when all are done.</summary>
    /// <param name="callerOnly">Every chunk on the calling thread: for work between libtorch's parallel regions, whose
    /// OpenMP workers are still spinning on the other cores (waking ours there makes both fight for them).</param>
    public void Run(int chunks, delegate*<void*, int, void> body, void* state, bool callerOnly = false)
    {
        int helpers = callerOnly ? 0 : Math.Min(threads, chunks) - 1;
        if (helpers <= 0 || !Monitor.TryEnter(gate))
        {
            for (int c = 0; c < chunks; c++) body(state, c);
            return;
        }
        try
        {
            while (workers.Count < helpers) workers.Add(new Worker(this));
            this.body = body;
            this.state = state;
            this.chunks = chunks;
            next = 0;
            failure = null;
            running = helpers;
            for (int i = 0; i < helpers; i++) workers[i].Active = true;
            generation++; // publishes the job (volatile write after the plain ones)
            for (int i = 0; i < helpers; i++) workers[i].Wake();
            Work();
            var spin = new SpinWait();
            while (Volatile.Read(ref running) != 0) spin.SpinOnce(sleep1Threshold: -1);
            if (failure is not null) ExceptionDispatchInfo.Throw(failure);
        }
        finally
        {
            Monitor.Exit(gate);
        }
    }

    void Work()
    {
        try
        {
            for (int c; (c = Interlocked.Increment(ref next) - 1) < chunks;) body(state, c);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref failure, e, null);
            next = chunks;
        }
    }

    sealed class Worker
    {
        readonly KernelThreadPool pool;
        readonly SemaphoreSlim signal = new(0);
        int sleeping, seen;
        public volatile bool Active;

        public Worker(KernelThreadPool pool)
        {
            this.pool = pool;
            seen = pool.generation;
            new Thread(Loop) { IsBackground = true, Name = "SharpTune kernel" }.Start();
        }

        public void Wake()
        {
            if (Interlocked.Exchange(ref sleeping, 0) == 1) signal.Release();
        }

        void Loop()
        {
            while (true)
            {
                WaitForJob();
                seen = pool.generation;
                if (!Active) continue;
                Active = false;
                pool.Work();
                Interlocked.Decrement(ref pool.running);
            }
        }

        void WaitForJob()
        {
            long until = Stopwatch.GetTimestamp() + SpinTicks;
            while (pool.generation == seen)
            {
                if (Stopwatch.GetTimestamp() < until)
                {
                    Thread.SpinWait(20);
                    continue;
                }
                Interlocked.Exchange(ref sleeping, 1); // a full fence before reading generation (Wake does the mirror)
                if (pool.generation != seen)
                {
                    // A job came in while we were going to sleep: take back the flag, or consume the release Wake sent.
                    if (Interlocked.Exchange(ref sleeping, 0) == 0) signal.Wait();
                    return;
                }
                signal.Wait();
                until = Stopwatch.GetTimestamp() + SpinTicks;
            }
        }
    }
}
