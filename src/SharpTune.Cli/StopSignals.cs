using System.Runtime.InteropServices;
using SharpTune.Distributed;

namespace SharpTune.Cli;

/// <summary>
/// SIGINT (Ctrl-C) and SIGTERM (what Slurm and other schedulers send before they end a job) during training. The first
/// cancels <see cref="Token"/>: the trainer finishes the step under way, saves a checkpoint and stops. A second signal
/// gets the default action: the process ends at once, killed by the signal (the work since the last checkpoint is lost).
/// </summary>
sealed class StopSignals : IDisposable
{
    readonly CancellationTokenSource source = new();
    readonly PosixSignalRegistration[] registrations;
    readonly Action<string> say;
    int received;   // the first signal's exit code (128 + its number), or 0

    public StopSignals(Action<string> say)
    {
        this.say = say;
        registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)];
    }

    public CancellationToken Token => source.Token;

    /// <summary>
    /// The exit code of a run stopped by a signal, as a shell reports a process the signal ended: 130 (SIGINT), 143
    /// (SIGTERM). The ranks of a job agree on it (the highest), so a rank stopped by another's SIGTERM ends with 143 too:
    /// call it on every rank.
    /// </summary>
    public int ExitCode(ICommunicator world)
    {
        Span<double> code = [received];
        if (world.Size > 1) world.AllReduceMax(code);
        return code[0] is 0 ? CommandRunner.Interrupted : (int)code[0];
    }

    /// <summary>The signal received first, by name; null when none came (another rank of the job was signalled).</summary>
    public string? Name => received switch { CommandRunner.Interrupted => "SIGINT", CommandRunner.Terminated => "SIGTERM", _ => null };

    void Handle(PosixSignalContext context)
    {
        int code = context.Signal == PosixSignal.SIGTERM ? CommandRunner.Terminated : CommandRunner.Interrupted;
        if (Interlocked.CompareExchange(ref received, code, 0) != 0) return;   // the second: not cancelled, the process ends
        context.Cancel = true;
        source.Cancel();
        say($"{Name}: stopping after the current step to save a checkpoint; send it again to stop at once, losing the work since the last checkpoint");
    }

    public void Dispose()
    {
        foreach (var registration in registrations) registration.Dispose();
        source.Dispose();
    }
}
