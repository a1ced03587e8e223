namespace SharpTune.Distributed;

/// <summary>
/// The processes of one data-parallel job and the collectives they run together, as MPI_COMM_WORLD offers
/// them. Every process calls every collective in the same order; a process alone is a job of size 1 whose
/// collectives return their input (<see cref="SingleProcess"/>), so training code reads the same either way.
/// </summary>
public interface ICommunicator
{
    /// <summary>This process's index, 0 to <see cref="Size"/> - 1.</summary>
    int Rank { get; }

    int Size { get; }

    /// <summary>Rank 0: the one that writes files and prints.</summary>
    bool IsMain => Rank == 0;

    /// <summary>Processes of this job on this machine (they share its cores).</summary>
    int LocalSize { get; }

    /// <summary>One line for the log: the library and the granted thread level, or "single process".</summary>
    string Description { get; }

    /// <summary>Time spent inside collectives so far, waiting for slower ranks included.</summary>
    TimeSpan CommunicationTime { get; }

    /// <summary>Element-wise sum over all ranks, in place.</summary>
    void AllReduceSum(Span<float> values);

    /// <summary>Element-wise sum over all ranks, in place.</summary>
    void AllReduceSum(Span<double> values);

    /// <summary>Element-wise maximum over all ranks, in place.</summary>
    void AllReduceMax(Span<double> values);

    /// <summary>
    /// Starts the element-wise sum over all ranks of <paramref name="count"/> floats at <paramref name="values"/>, in place,
    /// on the job's gradient channel: every rank starts these in the same order, and they are ordered apart from this
    /// interface's blocking collectives, so they may be in flight while those run. The memory must stay allocated and
    /// untouched until the returned reduction completes. By default the sum is done before this returns.
    /// </summary>
    unsafe IPendingReduction StartAllReduceSum(IntPtr values, int count)
    {
        AllReduceSum(new Span<float>((void*)values, count));
        return PendingReduction.Completed;
    }

    /// <summary>Every rank's <paramref name="values"/> become rank <paramref name="root"/>'s (same length on every rank).</summary>
    void Broadcast(Span<byte> values, int root = 0);

    /// <summary>Each rank's bytes, by rank, on every rank; the lengths may differ.</summary>
    byte[][] AllGather(ReadOnlySpan<byte> local);

    void Barrier();

    /// <summary>Ends every process of the job with <paramref name="code"/> (MPI_Abort); a single process just exits.</summary>
    void Abort(int code);

    /// <summary>Leaves the job at a normal end (MPI_Finalize).</summary>
    void Finish();
}

/// <summary>A reduction in flight (<see cref="ICommunicator.StartAllReduceSum"/>).</summary>
public interface IPendingReduction
{
    /// <summary>Lets the reduction progress; true once it completed.</summary>
    bool Test();

    /// <summary>Returns once the reduction completed.</summary>
    void Wait();
}

/// <summary>Reductions that completed when they were started.</summary>
public sealed class PendingReduction : IPendingReduction
{
    public static IPendingReduction Completed { get; } = new PendingReduction();
    public bool Test() => true;
    public void Wait() { }
}

/// <summary>A job of one process: collectives are the identity.</summary>
public sealed class SingleProcess : ICommunicator
{
    public static SingleProcess Instance { get; } = new();

    public int Rank => 0;
    public int Size => 1;
    public int LocalSize => 1;
    public string Description => "single process";
    public TimeSpan CommunicationTime => TimeSpan.Zero;
    public void AllReduceSum(Span<float> values) { }
    public void AllReduceSum(Span<double> values) { }
    public void AllReduceMax(Span<double> values) { }
    public void Broadcast(Span<byte> values, int root = 0) { }
    public byte[][] AllGather(ReadOnlySpan<byte> local) => [local.ToArray()];
    public void Barrier() { }
    public void Abort(int code) => Environment.Exit(code);
    public void Finish() { }
}
