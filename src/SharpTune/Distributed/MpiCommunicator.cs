using System.Diagnostics;
using System.Runtime.InteropServices;

namespace SharpTune.Distributed;

/// <summary>
/// MPI_COMM_WORLD of an Open MPI job. Calls are serialised by a lock, so any thread may make them whatever
/// thread level the library granted. Counts are ints in MPI: longer buffers go in pieces of at most 2^28
/// elements, in the same order on every rank.
/// </summary>
public sealed unsafe class MpiCommunicator : ICommunicator
{
    const int MaxCount = 1 << 28;
    readonly OpenMpi mpi;
    readonly object gate = new();
    readonly Stopwatch inCollectives = new();
    readonly IntPtr gradientChannel;   // MPI_Comm_dup of the world: the gradients' nonblocking sums, ordered apart from the world's collectives
    bool finished;

    MpiCommunicator(OpenMpi mpi, int threadLevel, int localSize)
    {
        this.mpi = mpi;
        Rank = mpi.Rank;
        Size = mpi.Size;
        LocalSize = localSize;
        string level = threadLevel switch { 0 => "single", 1 => "funneled", 2 => "serialized", _ => "multiple" };
        Description = $"{mpi.Version}, thread level {level}";
        // MPI_Comm_dup is a collective of the world: made here, where every rank is, not at a rank's first bucket.
        gradientChannel = mpi.DuplicateWorld();
    }

    /// <summary>Loads libmpi and joins the job (MPI_Init_thread).</summary>
    public static MpiCommunicator Start(int localSize)
    {
        var mpi = OpenMpi.Load();
        int level = mpi.Init();
        return new MpiCommunicator(mpi, level, localSize);
    }

    public int Rank { get; }
    public int Size { get; }
    public int LocalSize { get; }
    public string Description { get; }
    public TimeSpan CommunicationTime { get { lock (gate) return inCollectives.Elapsed; } }

    public void AllReduceSum(Span<float> values) => Reduce(values, mpi.Float, mpi.Sum);

    public void AllReduceSum(Span<double> values) => Reduce(values, mpi.Double, mpi.Sum);

    public void AllReduceMax(Span<double> values) => Reduce(values, mpi.Double, mpi.Max);

    void Reduce<T>(Span<T> values, IntPtr type, IntPtr op) where T : unmanaged
    {
        lock (gate)
        {
            inCollectives.Start();
            try
            {
                fixed (T* start = values)
                    for (int offset = 0; offset < values.Length; offset += MaxCount)
                        mpi.AllReduceInPlace(start + offset, Math.Min(MaxCount, values.Length - offset), type, op);
            }
            finally { inCollectives.Stop(); }
        }
    }

    public IPendingReduction StartAllReduceSum(IntPtr values, int count)
    {
        lock (gate)
        {
            inCollectives.Start();
            try
            {
                var requests = new List<IntPtr>();
                var start = (float*)values;
                for (int offset = 0; offset < count; offset += MaxCount)
                    requests.Add(mpi.StartAllReduceInPlace(start + offset, Math.Min(MaxCount, count - offset), mpi.Float, mpi.Sum, gradientChannel));
                return new Pending(this, requests);
            }
            finally { inCollectives.Stop(); }
        }
    }

    /// <summary>The requests of one started sum; each is freed by MPI once it completed.</summary>
    sealed class Pending(MpiCommunicator owner, List<IntPtr> requests) : IPendingReduction
    {
        public bool Test()
        {
            lock (owner.gate)
            {
                owner.inCollectives.Start();
                try
                {
                    for (int i = requests.Count - 1; i >= 0; i--)
                    {
                        var request = requests[i];
                        if (owner.mpi.Test(ref request)) requests.RemoveAt(i);
                        else requests[i] = request;
                    }
                    return requests.Count == 0;
                }
                finally { owner.inCollectives.Stop(); }
            }
        }

        public void Wait()
        {
            lock (owner.gate)
            {
                owner.inCollectives.Start();
                try
                {
                    foreach (var r in requests)
                    {
                        var request = r;
                        owner.mpi.Wait(ref request);
                    }
                    requests.Clear();
                }
                finally { owner.inCollectives.Stop(); }
            }
        }
    }

    public void Broadcast(Span<byte> values, int root = 0)
    {
        lock (gate)
        {
            inCollectives.Start();
            try
            {
                fixed (byte* start = values)
                    for (int offset = 0; offset < values.Length; offset += MaxCount)
                        mpi.Broadcast(start + offset, Math.Min(MaxCount, values.Length - offset), mpi.Byte, root);
            }
            finally { inCollectives.Stop(); }
        }
    }

    public byte[][] AllGather(ReadOnlySpan<byte> local)
    {
        lock (gate)
        {
            inCollectives.Start();
            try
            {
                var counts = new int[Size];
                int mine = local.Length;
                fixed (int* all = counts) mpi.AllGather(&mine, 1, mpi.Int, all);
                var offsets = new int[Size];
                long total = 0;
                for (int r = 0; r < Size; r++)
                {
                    offsets[r] = (int)total;
                    total += counts[r];
                }
                if (total > int.MaxValue) throw new InvalidOperationException($"AllGather of {total} bytes: more than MPI's int count");
                var gathered = new byte[total];
                fixed (byte* send = local)
                fixed (byte* receive = gathered)
                fixed (int* c = counts)
                fixed (int* o = offsets)
                    mpi.AllGatherV(send, mine, receive, c, o);
                return Enumerable.Range(0, Size).Select(r => gathered.AsSpan(offsets[r], counts[r]).ToArray()).ToArray();
            }
            finally { inCollectives.Stop(); }
        }
    }

    public void Barrier()
    {
        lock (gate) mpi.Barrier();
    }

    public void Abort(int code)
    {
        // No lock: another thread may be blocked inside a collective that will never complete.
        Console.Out.Flush();
        Console.Error.Flush();
        mpi.Abort(code == 0 ? 1 : code);
        Environment.Exit(code);
    }

    public void Finish()
    {
        lock (gate)
        {
            if (finished || mpi.IsFinalized) return;
            finished = true;
            mpi.End();
        }
    }
}

/// <summary>Reads what an MPI launcher tells its processes through the environment, before MPI starts.</summary>
public static class Launcher
{
    /// <summary>mpirun's variables, then those of other PMI launchers (MPICH's hydra, Slurm's srun with PMI-2), then PMIx's.</summary>
    static readonly string[] SizeVariables = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"];
    static readonly string[] LocalSizeVariables = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"];

    /// <summary>True when an MPI launcher started this process (even a job of one process).</summary>
    public static bool Detected => SizeVariables.Any(v => Environment.GetEnvironmentVariable(v) is not null)
        || Environment.GetEnvironmentVariable("PMIX_RANK") is not null;

    /// <summary>Processes of the job on this machine; 1 when the launcher does not say.</summary>
    public static int LocalSize =>
        LocalSizeVariables.Select(v => int.TryParse(Environment.GetEnvironmentVariable(v), out int n) ? n : 0).FirstOrDefault(n => n > 0, 1);
}
