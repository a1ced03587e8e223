using System.Security.Cryptography;
using System.Text;
using SharpTune.Distributed;
using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// The parts of a run that a data-parallel job adds around the training loop: threads per rank, one
/// starting point (rank 0's initial trainable weights and label set on every rank) and the check that every
/// rank runs the same options on the same data.
/// </summary>
public static class DataParallelJob
{
    /// <summary>
    /// Sets libtorch's threads: <paramref name="threads"/> when given; in a job of several processes the
    /// machine's cores shared among the ranks on it (mpirun binds each rank to one core unless --bind-to none,
    /// and libtorch then sees one core); otherwise libtorch's default. Returns the threads in use.
    /// </summary>
    public static int ConfigureThreads(int? threads, ICommunicator world)
    {
        int chosen = threads ?? (world.Size > 1 ? Math.Max(1, Environment.ProcessorCount / Math.Max(1, world.LocalSize)) : 0);
        if (chosen > 0) set_num_threads(chosen);
        return get_num_threads();
    }

    /// <summary>One line describing the job, for the log; null for a single process.</summary>
    public static string? Describe(ICommunicator world, int threads, int batchSize) => world.Size == 1 ? null :
        $"data parallel: {world.Size} processes ({world.Description}), {threads} thread(s) in rank 0; " +
        $"--batch-size {batchSize} per process, global batch {batchSize * world.Size}";

    /// <summary>
    /// Fails on every rank, naming what differs, unless every rank has the same value for each key (the
    /// options, the data files' hashes, the label set); rank 0's value is the reference.
    /// </summary>
    public static void CheckSameRun(ICommunicator world, IReadOnlyDictionary<string, string> facts)
    {
        if (world.Size == 1) return;
        var keys = facts.Keys.Order(StringComparer.Ordinal).ToList();
        var mine = string.Join("\n", keys.Select(k => $"{k}\t{facts[k]}"));
        var all = Gather(world, mine);
        var problems = new List<string>();
        var reference = Parse(all[0]);
        for (int r = 1; r < all.Length; r++)
        {
            var other = Parse(all[r]);
            foreach (var (key, value) in reference)
                if (other.GetValueOrDefault(key) != value)
                    problems.Add($"rank {r} differs from rank 0 in {key} (sha256 {Short(other.GetValueOrDefault(key))} against {Short(value)})");
        }
        if (problems.Count > 0)
            throw new InvalidDataException("the processes of this job do not run the same configuration: " + string.Join("; ", problems.Take(5)) +
                "; give every process the same command line and the same files (same paths on every machine)");

        static Dictionary<string, string> Parse(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split('\t', 2)).ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "");
        static string Short(string? value) => value is null ? "none" : value.Length > 16 ? value[..16] : value;
    }

    /// <summary>Every rank's trainable weights become rank 0's: the randomly initialised head, prompt encoders and adapters.</summary>
    public static void BroadcastTrainable(ICommunicator world, nn.Module model) =>
        TensorBroadcast.FromRoot(world, model.parameters().Where(p => p.requires_grad));

    /// <summary>
    /// The job's shape and where its collectives' time went, for metrics.jsonl: on rank 0 over the whole training
    /// (waiting for other ranks included), and per rank per timed step (after <see cref="StepCollectives.WarmupSteps"/>):
    /// the step, the loss exchange (the wait for the slower rank), the gradients' sums started and progressed during
    /// backward, and the wait for them after backward.
    /// Every rank calls it (it gathers the ranks' step records).
    /// </summary>
    public static IReadOnlyDictionary<string, object?> Report(ICommunicator world, int threads, int batchSize, TimeSpan communication, TimeSpan gradients, TimeSpan training)
    {
        var record = StepCollectives.Last;
        var (timed, mean) = record?.Timed() ?? (0, default);
        var ranks = Gather(world, FormattableString.Invariant($"{timed} {mean.Seconds:R} {mean.Exchange:R} {mean.Gradients:R} {mean.InBackward:R}"))
            .Select(text => text.Split(' ').Select(v => double.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray()).ToArray();
        double[] ByRank(int field) => ranks.Select(r => Math.Round(1000 * r[field], 2)).ToArray();
        double seconds = Math.Max(1e-9, training.TotalSeconds);
        return new Dictionary<string, object?>
        {
            ["processes"] = world.Size, ["threads_per_process"] = threads, ["batch_per_process"] = batchSize, ["global_batch"] = batchSize * world.Size,
            ["communication_seconds"] = Math.Round(communication.TotalSeconds, 3), ["training_seconds"] = Math.Round(training.TotalSeconds, 3),
            ["communication_share"] = Math.Round(communication.TotalSeconds / seconds, 4),
            // The gradients' allreduce alone (with the copies into and out of the buckets), every step of the run.
            ["gradient_allreduce_seconds"] = Math.Round(gradients.TotalSeconds, 3),
            ["gradient_allreduce_share"] = Math.Round(gradients.TotalSeconds / seconds, 4),
            // Collectives outside the steps' loss exchange and gradient sum: evaluation's gathers, checks, resume.
            ["other_collectives_seconds"] = Math.Round(Math.Max(0, communication.TotalSeconds - (record?.TotalSeconds ?? 0)), 3),
            ["timed_steps"] = timed, ["warmup_steps"] = StepCollectives.WarmupSteps,
            ["step_ms_by_rank"] = ByRank(1), ["loss_exchange_ms_by_rank"] = ByRank(2), ["gradient_wait_ms_by_rank"] = ByRank(3),
            // The sums' starts and progress inside backward (bucket copies, MPI_Iallreduce, MPI_Test): overlapped with it.
            ["gradient_in_backward_ms_by_rank"] = ByRank(4),
            // Buckets of the gradients, and how many the last step started during backward (overlapped with it), on rank 0.
            ["gradient_buckets"] = record?.LastOverlap.Buckets ?? 0, ["buckets_started_during_backward"] = record?.LastOverlap.Overlapped ?? 0,
            ["library"] = world.Description,
        };
    }

    /// <summary>SHA-256 of a file's bytes, in hex; "none" for no file.</summary>
    public static string FileHash(string? path)
    {
        if (path is null) return "none";
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream));
    }

    public static string TextHash(string text) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    /// <summary>Each rank's text, by rank, on every rank.</summary>
    public static string[] Gather(ICommunicator world, string text) =>
        world.AllGather(Encoding.UTF8.GetBytes(text)).Select(b => Encoding.UTF8.GetString(b)).ToArray();
}
