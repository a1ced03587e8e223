namespace SharpTune.Checkpoints;

/// <summary>Writes files so that readers see the old content or the complete new one, never a partial file.</summary>
public static class AtomicFile
{
    /// <summary>Writes through <paramref name="write"/> into a temporary file beside <paramref name="path"/>, flushes it to disk, then renames it over <paramref name="path"/>.</summary>
    /// <param name="expectedBytes">The file's size when the caller knows it, for the message when the disk is full.</param>
    /// <exception cref="DiskFullException">The disk (or quota) filled: names the file, its file system, the room left and the bytes needed.</exception>
    public static void Write(string path, Action<Stream> write, long? expectedBytes = null)
    {
        string full = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(directory);
        string temporary = Path.Combine(directory, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        long written = 0;
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                try
                {
                    write(stream);
                    stream.Flush(flushToDisk: true);
                }
                finally
                {
                    written = stream.Position;
                }
            }
            File.Move(temporary, full, overwrite: true);
        }
        catch (IOException e) when (DiskSpace.IsDiskFull(e))
        {
            try { File.Delete(temporary); } catch (IOException) { }
            throw DiskSpace.Explain(e, full, expectedBytes, written);
        }
        catch
        {
            try { File.Delete(temporary); } catch (IOException) { }
            throw;
        }
    }

    public static void WriteAllText(string path, string text) =>
        Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(false), leaveOpen: true);
            writer.Write(text);
        });
}
