using System.Runtime.InteropServices;

namespace SharpTune.Native;

/// <summary>
/// How glibc's malloc gives memory back, for runs that ask to save memory. libtorch on the CPU allocates every tensor
/// with malloc. glibc serves a block above its mmap threshold with a fresh mapping that goes back to the kernel when it
/// is freed; smaller blocks come from the heap and stay there. The threshold starts at 128 KiB and rises to the size of
/// every mapped block freed, up to 32 MiB, so after the first training step most activations live in the heap and the
/// heap keeps its high-water mark: a memory-saving step (checkpointed layers, chunked loss) that needs 2.3 GB at its
/// peak then holds 4.4 GB resident at Qwen2.5-0.5B's shapes (docs/decoders.md). Fixing the threshold keeps it where it
/// starts: big tensors return to the system when freed, at the price of faulting their pages in again (more CPU time).
/// </summary>
public static class GlibcAllocator
{
    /// <summary>glibc's own starting threshold, fixed: every tensor above 128 KiB is mapped and unmapped.</summary>
    public const int DefaultThresholdBytes = 128 * 1024;

    /// <summary>The variable glibc reads at start-up for the same setting; a user's own value is left in force.</summary>
    public const string EnvironmentVariable = "MALLOC_MMAP_THRESHOLD_";

    const int MmapThreshold = -3; // M_MMAP_THRESHOLD in malloc.h

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int Mallopt(int parameter, int value);

    /// <summary>
    /// Fixes glibc's mmap threshold at <paramref name="bytes"/> for the rest of the process (Linux with glibc only);
    /// returns what the process now runs with, in words, for the run's log.
    /// </summary>
    public static string ReturnFreedBlocksAbove(int bytes = DefaultThresholdBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        if (!OperatingSystem.IsLinux()) return "the platform's allocator (not Linux)";
        if (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } own)
            return $"glibc's mmap threshold as {EnvironmentVariable}={own} sets it";
        try
        {
            return Mallopt(MmapThreshold, bytes) == 1
                ? $"freed blocks over {Describe(bytes)} go back to the system (glibc mmap threshold fixed)"
                : "glibc's defaults (mallopt refused the threshold)";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "the C library's defaults (not glibc)";
        }
    }

    static string Describe(int bytes) => bytes % (1024 * 1024) == 0 ? $"{bytes / (1024 * 1024)} MiB" : bytes % 1024 == 0 ? $"{bytes / 1024} KiB" : $"{bytes} bytes";
}
