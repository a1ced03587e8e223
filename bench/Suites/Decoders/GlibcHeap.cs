using System.Runtime.InteropServices;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// Keeps glibc's malloc from handing big blocks back to the kernel, for the lm suites. A language model over GPT-2's
/// 50,257 tokens makes several logits-sized temporaries per step (8 x 256 x 50,257 floats: 412 MB each). glibc serves
/// blocks above its mmap threshold (at most 32 MB) with a fresh mmap and unmaps them on free, so every step faults
/// in and zeroes those pages again; on the project's VM that costs more than the arithmetic (a 2,048 x 256 x 50,257
/// product took 4.8 s with fresh pages and 0.3 s with reused ones, load average 18). With mmap off and trimming
/// pushed out of reach, freed blocks stay in the heap and are reused. Set <c>SHARPTUNE_BENCH_MALLOC=default</c> to
/// measure glibc's defaults instead.
/// </summary>
public static class GlibcHeap
{
    public const string EnvironmentVariable = "SHARPTUNE_BENCH_MALLOC";

    const int TrimThreshold = -1, TopPad = -2, MmapThreshold = -3, MmapMax = -4; // M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX in malloc.h

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int Mallopt(int parameter, int value);

    /// <summary>What the process runs with, in words, for the report.</summary>
    public static string Setting { get; private set; } = "glibc defaults";

    /// <summary>Applies the setting once per process (Linux only; elsewhere nothing changes) and says what it is.</summary>
    public static string KeepFreedMemory()
    {
        if (Setting != "glibc defaults" || !OperatingSystem.IsLinux()) return Setting;
        if (SharpTune.Native.NativeAllocator.Status.Preloaded) return Setting = $"{SharpTune.Native.NativeAllocator.Status.Library} (glibc's settings do not apply; it keeps freed spans itself)";
        if (Environment.GetEnvironmentVariable(EnvironmentVariable) == "default") return Setting = $"glibc defaults ({EnvironmentVariable}=default)";
        try
        {
            bool ok = Mallopt(MmapMax, 0) == 1 & Mallopt(TrimThreshold, int.MaxValue) == 1 & Mallopt(TopPad, 256 << 20) == 1;
            Setting = ok ? "glibc malloc keeps freed memory (mallopt M_MMAP_MAX 0, M_TRIM_THRESHOLD 2 GiB, M_TOP_PAD 256 MiB)" : "glibc defaults (mallopt refused)";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Setting = "glibc defaults (no mallopt: not glibc)";
        }
        return Setting;
    }

    /// <summary>
    /// The other way round, for one configuration of the decoder-memory suite: glibc's mmap threshold fixed at 128 KiB
    /// for the rest of the process (as <c>MALLOC_MMAP_THRESHOLD_=131072</c> at start-up). The threshold starts there
    /// and rises to the size of every mapped block freed, up to 32 MiB, so after the first step most activations live
    /// in the heap, which keeps its high-water mark. Fixed, every tensor above 128 KiB goes back to the system when
    /// freed, and its pages are faulted in and zeroed again at the next allocation (docs/decoders.md: about half the
    /// peak at 3.7 times the time). Returns the setting in words.
    /// </summary>
    public static string ReturnFreedBlocks()
    {
        if (!OperatingSystem.IsLinux()) return "the platform's allocator (not Linux)";
        if (SharpTune.Native.NativeAllocator.Status.Preloaded)
            return $"{SharpTune.Native.NativeAllocator.Status.Library}: glibc's mmap threshold does not apply (run with SHARPTUNE_ALLOCATOR=system)";
        try
        {
            return Mallopt(MmapThreshold, 128 * 1024) == 1
                ? "freed blocks over 128 KiB go back to the system (glibc mmap threshold fixed)"
                : "glibc's defaults (mallopt refused the threshold)";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "the C library's defaults (not glibc)";
        }
    }
}
