using System.Runtime.InteropServices;

namespace SharpTune.Distributed;

/// <summary>
/// The few functions of Open MPI's C API that data-parallel training needs, resolved at run time from
/// <c>libmpi.so.40</c> (Open MPI 4 and 5). Nothing here is touched unless a launcher started this process, so
/// building and single-process runs need no MPI. Open MPI's handles are exported objects: <c>MPI_COMM_WORLD</c>
/// is the address of <c>ompi_mpi_comm_world</c>, <c>MPI_FLOAT</c> of <c>ompi_mpi_float</c>, and so on.
/// </summary>
sealed unsafe class OpenMpi
{
    public const string LibraryName = "libmpi.so.40";
    public const int ThreadMultiple = 3;
    static readonly void* InPlace = (void*)1;

    public readonly IntPtr CommWorld, Float, Double, Byte, Int, Sum, Max;

    readonly delegate* unmanaged<int*, byte***, int, int*, int> initThread;
    readonly delegate* unmanaged<int*, int> finalized;
    readonly delegate* unmanaged<int> finalize;
    readonly delegate* unmanaged<IntPtr, int*, int> commRank, commSize;
    readonly delegate* unmanaged<void*, void*, int, IntPtr, IntPtr, IntPtr, int> allreduce;
    readonly delegate* unmanaged<void*, int, IntPtr, int, IntPtr, int> bcast;
    readonly delegate* unmanaged<void*, int, IntPtr, void*, int, IntPtr, IntPtr, int> allgather;
    readonly delegate* unmanaged<void*, int, IntPtr, void*, int*, int*, IntPtr, IntPtr, int> allgatherv;
    readonly delegate* unmanaged<void*, void*, int, IntPtr, IntPtr, IntPtr, IntPtr*, int> iallreduce;
    readonly delegate* unmanaged<IntPtr*, int*, void*, int> test;
    readonly delegate* unmanaged<IntPtr*, void*, int> wait;
    readonly delegate* unmanaged<IntPtr, IntPtr*, int> commDup;
    readonly delegate* unmanaged<IntPtr, int> barrier;
    readonly delegate* unmanaged<IntPtr, int, int> abort;
    readonly delegate* unmanaged<byte*, int*, int> libraryVersion;

    OpenMpi(IntPtr library)
    {
        IntPtr Export(string name) => NativeLibrary.TryGetExport(library, name, out var address) ? address
            : throw new DllNotFoundException($"{LibraryName} has no symbol {name}: is it Open MPI? (SharpTune's MPI layer speaks Open MPI's ABI)");
        CommWorld = Export("ompi_mpi_comm_world");
        Float = Export("ompi_mpi_float");
        Double = Export("ompi_mpi_double");
        Byte = Export("ompi_mpi_byte");
        Int = Export("ompi_mpi_int");
        Sum = Export("ompi_mpi_op_sum");
        Max = Export("ompi_mpi_op_max");
        initThread = (delegate* unmanaged<int*, byte***, int, int*, int>)Export("MPI_Init_thread");
        finalized = (delegate* unmanaged<int*, int>)Export("MPI_Finalized");
        finalize = (delegate* unmanaged<int>)Export("MPI_Finalize");
        commRank = (delegate* unmanaged<IntPtr, int*, int>)Export("MPI_Comm_rank");
        commSize = (delegate* unmanaged<IntPtr, int*, int>)Export("MPI_Comm_size");
        allreduce = (delegate* unmanaged<void*, void*, int, IntPtr, IntPtr, IntPtr, int>)Export("MPI_Allreduce");
        bcast = (delegate* unmanaged<void*, int, IntPtr, int, IntPtr, int>)Export("MPI_Bcast");
        allgather = (delegate* unmanaged<void*, int, IntPtr, void*, int, IntPtr, IntPtr, int>)Export("MPI_Allgather");
        allgatherv = (delegate* unmanaged<void*, int, IntPtr, void*, int*, int*, IntPtr, IntPtr, int>)Export("MPI_Allgatherv");
        iallreduce = (delegate* unmanaged<void*, void*, int, IntPtr, IntPtr, IntPtr, IntPtr*, int>)Export("MPI_Iallreduce");
        test = (delegate* unmanaged<IntPtr*, int*, void*, int>)Export("MPI_Test");
        wait = (delegate* unmanaged<IntPtr*, void*, int>)Export("MPI_Wait");
        commDup = (delegate* unmanaged<IntPtr, IntPtr*, int>)Export("MPI_Comm_dup");
        barrier = (delegate* unmanaged<IntPtr, int>)Export("MPI_Barrier");
        abort = (delegate* unmanaged<IntPtr, int, int>)Export("MPI_Abort");
        libraryVersion = (delegate* unmanaged<byte*, int*, int>)Export("MPI_Get_library_version");
    }

    /// <summary>
    /// Loads the library with RTLD_GLOBAL, as every binding that dlopens MPI does: Open MPI's plugins
    /// (<c>mca_*.so</c>) resolve symbols of libmpi and libopen-pal from the global scope.
    /// </summary>
    public static OpenMpi Load()
    {
        const int RtldNow = 2, RtldGlobal = 0x100;
        IntPtr handle;
        try { handle = Dl.dlopen(LibraryName, RtldNow | RtldGlobal); }
        catch (EntryPointNotFoundException) { handle = DlLegacy.dlopen(LibraryName, RtldNow | RtldGlobal); }
        if (handle == IntPtr.Zero)
            throw new DllNotFoundException($"this process was started by an MPI launcher but {LibraryName} cannot be loaded: " +
                "install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin) on every machine of the job");
        return new OpenMpi(handle);
    }

    /// <summary>MPI_Init_thread asking for MPI_THREAD_MULTIPLE; returns the level granted.</summary>
    public int Init()
    {
        int provided;
        Check(initThread(null, null, ThreadMultiple, &provided), "MPI_Init_thread");
        return provided;
    }

    public bool IsFinalized { get { int flag; finalized(&flag); return flag != 0; } }

    public void End() => Check(finalize(), "MPI_Finalize");

    public int Rank { get { int rank; Check(commRank(CommWorld, &rank), "MPI_Comm_rank"); return rank; } }

    public int Size { get { int size; Check(commSize(CommWorld, &size), "MPI_Comm_size"); return size; } }

    public string Version
    {
        get
        {
            var text = stackalloc byte[8192];   // MPI_MAX_LIBRARY_VERSION_STRING is 256 in Open MPI 4
            int length;
            libraryVersion(text, &length);
            return (Marshal.PtrToStringUTF8((IntPtr)text, Math.Max(0, length)) ?? "").Split(',')[0].Trim();
        }
    }

    /// <summary>MPI_Allreduce with MPI_IN_PLACE: every rank's <paramref name="buffer"/> becomes the element-wise reduction.</summary>
    public void AllReduceInPlace(void* buffer, int count, IntPtr type, IntPtr op) =>
        Check(allreduce(InPlace, buffer, count, type, op, CommWorld), "MPI_Allreduce");

    /// <summary>
    /// MPI_Iallreduce with MPI_IN_PLACE on <paramref name="communicator"/>: starts the reduction and returns its request
    /// (an <c>MPI_Request</c>, a pointer in Open MPI). The buffer must stay untouched until <see cref="Wait"/> or a true <see cref="Test"/>.
    /// </summary>
    public IntPtr StartAllReduceInPlace(void* buffer, int count, IntPtr type, IntPtr op, IntPtr communicator)
    {
        IntPtr request;
        Check(iallreduce(InPlace, buffer, count, type, op, communicator, &request), "MPI_Iallreduce");
        return request;
    }

    /// <summary>MPI_Test: drives the library's progress and says whether the request completed (then it is freed).</summary>
    public bool Test(ref IntPtr request)
    {
        int done;
        fixed (IntPtr* r = &request) Check(test(r, &done, null), "MPI_Test");   // null: MPI_STATUS_IGNORE
        return done != 0;
    }

    /// <summary>MPI_Wait: blocks until the request completed (then it is freed).</summary>
    public void Wait(ref IntPtr request)
    {
        fixed (IntPtr* r = &request) Check(wait(r, null), "MPI_Wait");
    }

    /// <summary>MPI_Comm_dup of MPI_COMM_WORLD: the same processes, with collectives ordered apart from the world's.</summary>
    public IntPtr DuplicateWorld()
    {
        IntPtr communicator;
        Check(commDup(CommWorld, &communicator), "MPI_Comm_dup");
        return communicator;
    }

    public void Broadcast(void* buffer, int count, IntPtr type, int root) => Check(bcast(buffer, count, type, root, CommWorld), "MPI_Bcast");

    public void AllGather(void* send, int count, IntPtr type, void* receive) =>
        Check(allgather(send, count, type, receive, count, type, CommWorld), "MPI_Allgather");

    public void AllGatherV(void* send, int count, void* receive, int* counts, int* offsets) =>
        Check(allgatherv(send, count, Byte, receive, counts, offsets, Byte, CommWorld), "MPI_Allgatherv");

    public void Barrier() => Check(barrier(CommWorld), "MPI_Barrier");

    public void Abort(int code) => abort(CommWorld, code);

    // MPI_COMM_WORLD's default handler is MPI_ERRORS_ARE_FATAL: a failed call ends the job before it returns.
    // The check is for a handler set otherwise.
    static void Check(int code, string function)
    {
        if (code != 0) throw new InvalidOperationException($"{function} failed with MPI error {code}");
    }

    static class Dl
    {
        [DllImport("libc.so.6")] public static extern IntPtr dlopen([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);
    }

    static class DlLegacy
    {
        [DllImport("libdl.so.2")] public static extern IntPtr dlopen([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);
    }
}
