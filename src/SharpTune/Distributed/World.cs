namespace SharpTune.Distributed;

/// <summary>
/// The job this process belongs to, as torch.distributed's default process group: an MPI job when a launcher
/// (<c>mpirun</c>, <c>srun</c>) started the process, otherwise a job of one. MPI is loaded and initialised on
/// first use, and only under a launcher.
/// </summary>
public static class World
{
    static readonly Lazy<ICommunicator> current = new(() =>
        Launcher.Detected ? MpiCommunicator.Start(Launcher.LocalSize) : SingleProcess.Instance);

    public static ICommunicator Current => current.Value;

    /// <summary>True once this process joined an MPI job.</summary>
    public static bool Started => current.IsValueCreated && current.Value is MpiCommunicator;

    /// <summary>
    /// How a command ends: with exit code 0 the job is left normally (MPI_Finalize); with an error, after the
    /// message was printed, the whole job is ended with this rank's code (MPI_Abort), so no other rank waits
    /// forever in a collective this one will never join. Returns <paramref name="code"/> for a single process.
    /// With <paramref name="together"/> every rank ends with this code at the same point (a run stopped by a signal), so
    /// the job is left normally too.
    /// </summary>
    public static int Exit(int code, bool together = false)
    {
        if (!Started) return code;
        var world = current.Value;
        if (code == 0 || together)
        {
            // Together: wait until every rank is done (rank 0 writing the checkpoint) before any leaves with a non-zero
            // code, on which mpirun ends the others.
            if (together) world.Barrier();
            world.Finish();
            return code;
        }
        Console.Error.WriteLine($"sharptune: rank {world.Rank} of {world.Size} on {Environment.MachineName} failed (exit code {code}); ending the job");
        world.Abort(code);
        return code;
    }
}
