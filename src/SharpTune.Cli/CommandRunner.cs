using System.Text.Json;
using SharpTune.Checkpoints;
using SharpTune.Models.Memory;

namespace SharpTune.Cli;

/// <summary>
/// Runs a command body so that errors a user can cause (a bad file, a bad option, a missing model) are
/// printed as one clear line on stderr with a non-zero exit code, never as a stack trace.
/// </summary>
public static class CommandRunner
{
    public const int UserError = 1;
    public const int InternalError = 2;
    /// <summary>Training stopped by SIGINT (Ctrl-C) or SIGTERM after saving a checkpoint: the codes a shell gives a process those signals end.</summary>
    public const int Interrupted = 130, Terminated = 143;

    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return UserError;
        }
        catch (IOException e) when (DiskSpace.IsDiskFull(e))
        {
            Console.Error.WriteLine($"error: no space left on device: {e.Message}");
            return UserError;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"internal error: {e.GetType().Name}: {e.Message}");
            if (Environment.GetEnvironmentVariable("SHARPTUNE_DEBUG") == "1") Console.Error.WriteLine(e);
            else Console.Error.WriteLine("(set SHARPTUNE_DEBUG=1 for the stack trace)");
            return InternalError;
        }
    }

    static bool IsUserError(Exception e) =>
        e is FileNotFoundException or DirectoryNotFoundException or InvalidDataException or FormatException or ArgumentException
            or JsonException or UnauthorizedAccessException or NotSupportedException
            or NotEnoughMemoryException or DiskFullException;   // the machine lacks room: said with the numbers and what would fit
}
