using SharpTune.Distributed;

namespace SharpTune.Tests.Distributed;

/// <summary>
/// A job whose ranks are threads of this process: collectives really combine the ranks' data (through shared
/// slots and a barrier), so the layers above MPI are tested without Open MPI.
/// </summary>
sealed class InProcessJob(int size)
{
    readonly Barrier barrier = new(size);
    readonly object?[] slots = new object?[size];
    // The gradient channel, as MPI's duplicated communicator: its sums are ordered among themselves, apart from the rest.
    readonly Barrier gradientBarrier = new(size);
    readonly float[]?[] gradientSlots = new float[]?[size];

    public ICommunicator Rank(int rank) => new Member(this, rank);

    /// <summary>Runs <paramref name="body"/> on every rank, each on its own thread, and returns their results by rank.</summary>
    public static T[] Run<T>(int size, Func<ICommunicator, T> body)
    {
        var job = new InProcessJob(size);
        var results = new T[size];
        var errors = new Exception?[size];
        var threads = Enumerable.Range(0, size).Select(r => new Thread(() =>
        {
            try { results[r] = body(job.Rank(r)); }
            catch (Exception e) { errors[r] = e; job.barrier.RemoveParticipant(); job.gradientBarrier.RemoveParticipant(); }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        if (errors.FirstOrDefault(e => e is not null) is { } error) throw new AggregateException(error);
        return results;
    }

    sealed class Member(InProcessJob job, int rank) : ICommunicator
    {
        Task gradientSums = Task.CompletedTask;   // this rank's started sums, run one after another as MPI orders them

        public int Rank => rank;
        public int Size => job.slots.Length;
        public int LocalSize => Size;
        public string Description => "threads of one process";
        public TimeSpan CommunicationTime => TimeSpan.Zero;

        T[][] Exchange<T>(T[] mine)
        {
            job.slots[rank] = mine;
            job.barrier.SignalAndWait();
            var all = job.slots.Select(s => (T[])s!).ToArray();
            job.barrier.SignalAndWait();
            return all;
        }

        public void AllReduceSum(Span<float> values)
        {
            var all = Exchange(values.ToArray());
            for (int i = 0; i < values.Length; i++) values[i] = all.Sum(a => a[i]);
        }

        public void AllReduceSum(Span<double> values)
        {
            var all = Exchange(values.ToArray());
            for (int i = 0; i < values.Length; i++) values[i] = all.Sum(a => a[i]);
        }

        public void AllReduceMax(Span<double> values)
        {
            var all = Exchange(values.ToArray());
            for (int i = 0; i < values.Length; i++) values[i] = all.Max(a => a[i]);
        }

        /// <summary>Nonblocking, as MPI_Iallreduce: the sum runs on a task, after this rank's earlier ones, while the rank goes on.</summary>
        public IPendingReduction StartAllReduceSum(IntPtr values, int count)
        {
            gradientSums = gradientSums.ContinueWith(_ =>
            {
                var mine = new float[count];
                System.Runtime.InteropServices.Marshal.Copy(values, mine, 0, count);
                job.gradientSlots[rank] = mine;
                job.gradientBarrier.SignalAndWait();
                var sum = Enumerable.Range(0, count).Select(i => job.gradientSlots.Sum(a => a![i])).ToArray();
                job.gradientBarrier.SignalAndWait();
                System.Runtime.InteropServices.Marshal.Copy(sum, 0, values, count);
            }, TaskContinuationOptions.RunContinuationsAsynchronously);
            return new TaskReduction(gradientSums);
        }

        sealed class TaskReduction(Task task) : IPendingReduction
        {
            public bool Test() => task.IsCompleted;
            public void Wait() => task.GetAwaiter().GetResult();
        }

        public void Broadcast(Span<byte> values, int root = 0) => Exchange(values.ToArray())[root].CopyTo(values);

        public byte[][] AllGather(ReadOnlySpan<byte> local) => Exchange(local.ToArray().Select(b => b).ToArray()).Select(a => a.ToArray()).ToArray();

        public void Barrier() => Exchange(Array.Empty<byte>());
        public void Abort(int code) => throw new InvalidOperationException($"abort {code}");
        public void Finish() { }
    }
}
