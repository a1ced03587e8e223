using System.Runtime.InteropServices;
using System.Text;

namespace SharpTune.Training;

/// <summary>
/// The run folder's lock, held for the whole run by the process that trains in it (rank 0 of a job: the one that
/// writes): an OS lock on <c>RUN/.lock</c>, flock on Linux, which the OS releases however the process ends, kill -9
/// included, so it never goes stale. The file holds the holder's process id, which a second process names when it
/// refuses to train in the same folder.
/// </summary>
public sealed class RunFolderLock : IDisposable
{
    public const string FileName = ".lock";

    readonly FileStream file;
    readonly string? createdFolder;

    RunFolderLock(FileStream file, string? createdFolder) => (this.file, this.createdFolder) = (file, createdFolder);

    /// <summary>Takes the lock of <paramref name="runFolder"/> (created if missing), or throws naming the process that holds it.</summary>
    public static RunFolderLock Acquire(string runFolder)
    {
        runFolder = Path.GetFullPath(runFolder);
        bool created = !Directory.Exists(runFolder);
        Directory.CreateDirectory(runFolder);
        string path = Path.Combine(runFolder, FileName);
        FileStream file;
        try
        {
            // FileShare.None: .NET takes flock(LOCK_EX | LOCK_NB) on Unix and a sharing lock on Windows.
            file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException) when (File.Exists(path))
        {
            string holder = Holder(path) is { } pid ? $"process {pid}" : "another process";
            throw new ArgumentException($"--out {runFolder} is in use: {holder} is training in it (it holds the lock {path}); " +
                "wait for it to end or stop it, or choose another --out");
        }
        file.SetLength(0);
        file.Write(Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n"));
        file.Flush();
        // The file stays when the lock is released: deleting it could let two processes lock two different files.
        return new RunFolderLock(file, created ? runFolder : null);
    }

    /// <summary>The process id written in a lock file that another process holds; null when unknown.</summary>
    static int? Holder(string path)
    {
        try
        {
            // read(2) directly: .NET's own open would ask for a shared lock and be refused too.
            int fd = LibC.open(path, 0);   // O_RDONLY
            if (fd < 0) return null;
            try
            {
                var buffer = new byte[32];
                int read = (int)LibC.read(fd, buffer, buffer.Length);
                return read > 0 && int.TryParse(Encoding.ASCII.GetString(buffer, 0, read).Trim(), out int pid) ? pid : null;
            }
            finally
            {
                LibC.close(fd);
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;   // not Linux
        }
    }

    /// <summary>
    /// Releases the lock. A folder the lock created that still holds nothing else (a run refused before any work) is
    /// removed, lock file included, while the lock is still held, so a refused run leaves nothing behind.
    /// </summary>
    public void Dispose()
    {
        if (createdFolder is not null && Directory.EnumerateFileSystemEntries(createdFolder).All(e => Path.GetFileName(e) == FileName))
        {
            try
            {
                File.Delete(Path.Combine(createdFolder, FileName));
                Directory.Delete(createdFolder);
            }
            catch (IOException)
            {
                // something else appeared in it meanwhile: it stays
            }
        }
        file.Dispose();
    }

    static class LibC
    {
        [DllImport("libc.so.6", SetLastError = true)] public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);
        [DllImport("libc.so.6", SetLastError = true)] public static extern nint read(int fd, byte[] buffer, nint count);
        [DllImport("libc.so.6")] public static extern int close(int fd);
    }
}
