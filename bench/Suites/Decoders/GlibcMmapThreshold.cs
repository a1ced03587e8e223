using System.Runtime.InteropServices;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// glibc's mmap threshold fixed at 128 KiB, for one configuration of the decoder-memory suite (the same as starting the
/// process with <c>MALLOC_MMAP_THRESHOLD_=131072</c>). libtorch on the CPU allocates every tensor with malloc. glibc
/// serves a block above its mmap threshold with a fresh mapping that goes back to the kernel when it is freed; smaller
/// blocks come from the heap and stay there. The threshold starts at 128 KiB and rises to the size of every mapped block
/// freed, up to 32 MiB, so after the first step most activations live in the heap, which keeps its high-water mark.
/// Fixed, big tensors return to the system when freed, and their pages are faulted in and zeroed again at every
/// allocation: the suite measures what that trade gives (docs/decoders.md: about half the peak at 3.7 times the time).
/// </summary>
public static class GlibcMmapThreshold
{
    const int Threshold = 128 * 1024, MmapThreshold = -3; // M_MMAP_THRESHOLD in malloc.h

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int Mallopt(int parameter, int value);

    /// <summary>Fixes the threshold for the rest of the process (Linux with glibc only); returns the setting in words.</summary>
    public static string Fix()
    {
        if (!OperatingSystem.IsLinux()) return "the platform's allocator (not Linux)";
        try
        {
            return Mallopt(MmapThreshold, Threshold) == 1
                ? "freed blocks over 128 KiB go back to the system (glibc mmap threshold fixed)"
                : "glibc's defaults (mallopt refused the threshold)";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "the C library's defaults (not glibc)";
        }
    }
}
