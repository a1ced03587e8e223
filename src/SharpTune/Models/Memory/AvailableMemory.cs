using SharpTune.Checkpoints;

namespace SharpTune.Models.Memory;

/// <summary>What this process may still allocate, and where that figure came from.</summary>
public sealed record MemoryAvailability(long Bytes, string Source)
{
    public override string ToString() => $"{ByteSize.Format(Bytes)} available ({Source})";
}

/// <summary>
/// The memory a command may use before the kernel kills the process: Linux's <c>MemAvailable</c>, or the room left
/// under the cgroup's limit (<c>memory.max</c> less <c>memory.current</c>, v2; <c>memory.limit_in_bytes</c> less
/// <c>memory.usage_in_bytes</c>, v1) when lower, as in a container; elsewhere what the .NET runtime sees
/// (<see cref="GC.GetGCMemoryInfo()"/>'s total available memory, which honours container limits).
/// <c>SHARPTUNE_AVAILABLE_MEMORY</c> (bytes, or 512M, 24G...) overrides it, for tests and for users who want to keep room.
/// </summary>
public static class AvailableMemory
{
    public const string Variable = "SHARPTUNE_AVAILABLE_MEMORY";

    public static MemoryAvailability Current()
    {
        if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } given)
            return new MemoryAvailability(ByteSize.Parse(given, Variable), $"set by {Variable}");
        MemoryAvailability? best = MemInfo() is { } free ? new MemoryAvailability(free, "MemAvailable in /proc/meminfo") : null;
        foreach (var (limit, usage) in new[] { ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                               ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes") })
            if (ReadNumber(limit) is { } max && max < long.MaxValue / 2)
            {
                long room = max - (ReadNumber(usage) ?? 0);
                if (best is null || room < best.Bytes) best = new MemoryAvailability(Math.Max(0, room), $"the cgroup limit {limit} less its usage");
            }
        return best ?? new MemoryAvailability(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes, ".NET's total available memory");
    }

    static long? MemInfo()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)
                    && long.TryParse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], out long kb))
                    return kb * 1024;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>A number in a cgroup file, or null when the file is absent or says "max".</summary>
    static long? ReadNumber(string path)
    {
        try
        {
            return File.Exists(path) && long.TryParse(File.ReadAllText(path).Trim(), out long value) ? value : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
