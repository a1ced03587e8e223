namespace SharpTune.Checkpoints;

/// <summary>The file system a path lies on: where it is mounted, its kind, and the bytes free to this process.</summary>
public sealed record FileSystemSpace(string Path, string MountPoint, string Kind, long FreeBytes, bool Overridden)
{
    public override string ToString() =>
        $"{ByteSize.Format(FreeBytes)} free on the file system of {Path} ({Kind} mounted at {MountPoint}" +
        (Overridden ? $"; free space set by {DiskSpace.Variable})" : ")");
}

/// <summary>
/// Free disk space, asked before a long run writes, and disk-full errors told as what they are. The free space is
/// <see cref="DriveInfo.AvailableFreeSpace"/> (statvfs on Linux: what an unprivileged writer may use) of the file
/// system holding the path; <c>SHARPTUNE_AVAILABLE_DISK</c> (bytes, or 512M, 2G...) overrides it, for tests and for
/// users who want to keep room for something else.
/// </summary>
public static class DiskSpace
{
    public const string Variable = "SHARPTUNE_AVAILABLE_DISK";

    /// <summary>The file system that holds <paramref name="path"/> (or its nearest existing parent, for a folder still to be made).</summary>
    public static FileSystemSpace Of(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        string existing = full;
        while (!Directory.Exists(existing) && System.IO.Path.GetDirectoryName(existing) is { } parent) existing = parent;
        var (mount, kind) = MountOf(existing);
        if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } given)
            return new FileSystemSpace(full, mount, kind, ByteSize.Parse(given, Variable), Overridden: true);
        long free;
        try
        {
            free = new DriveInfo(existing).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            free = long.MaxValue;   // nothing known: nothing refused
        }
        return new FileSystemSpace(full, mount, kind, free, Overridden: false);
    }

    /// <summary>
    /// Throws <see cref="DiskFullException"/> when the file system of <paramref name="folder"/> has less than
    /// <paramref name="bytes"/> free; <paramref name="what"/> says what needs the room and how it was estimated.
    /// </summary>
    public static void Require(string folder, long bytes, string what)
    {
        var space = Of(folder);
        if (space.FreeBytes < bytes)
            throw new DiskFullException($"not enough disk space for {what}: {ByteSize.Format(bytes)} needed, {space}", space, bytes);
    }

    /// <summary>Whether <paramref name="e"/> says the disk (or the user's quota) is full: ENOSPC, EDQUOT, or Windows' disk-full codes.</summary>
    public static bool IsDiskFull(IOException e) => e is DiskFullException || e.HResult is
        28 or 122                                        // ENOSPC, EDQUOT (Linux errno; .NET puts the errno in HResult on Unix)
        or unchecked((int)0x80070070) or unchecked((int)0x80070027);   // ERROR_DISK_FULL, ERROR_HANDLE_DISK_FULL

    /// <summary>
    /// A disk-full error while writing <paramref name="path"/> as what it is: the file, its file system and the room
    /// left, and how much the write needed (<paramref name="neededBytes"/>, when known) or had written.
    /// </summary>
    public static DiskFullException Explain(IOException e, string path, long? neededBytes, long writtenBytes)
    {
        if (e is DiskFullException already) return already;
        FileSystemSpace? space = null;
        try { space = Of(path); } catch (Exception inner) when (inner is IOException or FormatException or UnauthorizedAccessException) { }
        string need = neededBytes is { } n ? $"the file needs {ByteSize.Format(n)}" : $"{ByteSize.Format(writtenBytes)} were written before the disk filled";
        return new DiskFullException(
            $"no space left on device while writing {System.IO.Path.GetFullPath(path)}: {need}; " +
            (space is null ? "the free space could not be read" : space.ToString()) +
            " (nothing partial was left under the file's name; free some space or write elsewhere)", space, neededBytes ?? writtenBytes, e);
    }

    /// <summary>The mount point and file-system kind holding <paramref name="path"/>: the longest mount point it lies under.</summary>
    static (string Mount, string Kind) MountOf(string path)
    {
        try
        {
            var best = DriveInfo.GetDrives()
                .Where(d => IsUnder(path, d.RootDirectory.FullName))
                .MaxBy(d => d.RootDirectory.FullName.Length);
            if (best is not null) return (best.RootDirectory.FullName, best.DriveFormat);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return (System.IO.Path.GetPathRoot(path) ?? "/", "file system");
    }

    static bool IsUnder(string path, string root)
    {
        var comparison = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        string withSeparator = root.EndsWith(System.IO.Path.DirectorySeparatorChar) ? root : root + System.IO.Path.DirectorySeparatorChar;
        return string.Equals(path, root, comparison) || path.StartsWith(withSeparator, comparison);
    }
}

/// <summary>A write that has no room, or a run refused at the start for lack of it; the message names the path, its file system and the bytes.</summary>
public sealed class DiskFullException : IOException
{
    public DiskFullException(string message, FileSystemSpace? space, long neededBytes, Exception? inner = null) : base(message, inner)
    {
        Space = space;
        NeededBytes = neededBytes;
        HResult = 28;   // ENOSPC, so code that tests the errno sees the same
    }

    public FileSystemSpace? Space { get; }
    public long NeededBytes { get; }
}
