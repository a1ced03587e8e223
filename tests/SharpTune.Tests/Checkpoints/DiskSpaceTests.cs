using System.Diagnostics;
using SharpTune.Checkpoints;

namespace SharpTune.Tests.Checkpoints;

public class DiskSpaceTests
{
    [Theory]
    [InlineData("1234", 1234L)]
    [InlineData("512M", 512L << 20)]
    [InlineData("2G", 2L << 30)]
    [InlineData("1.5GiB", 3L << 29)]
    [InlineData("100 KB", 100L << 10)]
    public void Sizes_parse_as_people_write_them(string text, long bytes) => Assert.Equal(bytes, ByteSize.Parse(text, "test"));

    [Fact]
    public void A_size_that_is_not_one_names_its_source() =>
        Assert.Contains("SOME_VARIABLE: 'lots' is not a size", Assert.Throws<FormatException>(() => ByteSize.Parse("lots", "SOME_VARIABLE")).Message);

    [Fact]
    public void A_disk_full_write_is_reported_with_the_file_its_file_system_and_the_bytes_and_leaves_nothing()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("weights.safetensors");
        // What .NET throws on Linux when write(2) fails with ENOSPC: an IOException whose HResult is the errno.
        var e = Assert.Throws<DiskFullException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[4096]);
            throw new IOException("No space left on device", 28);
        }, expectedBytes: 123_456_789));
        Assert.Contains($"no space left on device while writing {path}", e.Message);
        Assert.Contains("the file needs 123 MB", e.Message);
        Assert.Contains("free on the file system of", e.Message);
        Assert.Equal(123_456_789, e.NeededBytes);
        Assert.Empty(Directory.EnumerateFileSystemEntries(temp.Path));   // no temporary file left, nothing under the name

        // Any other IOException passes through as it was.
        var other = Assert.Throws<IOException>(() => AtomicFile.Write(path, _ => throw new IOException("device gone", 5)));
        Assert.IsNotType<DiskFullException>(other);
    }

    [Fact]
    public void Requiring_more_than_is_free_names_the_folder_and_what_needs_the_room()
    {
        using var temp = new TestModels.TempFolder();
        var space = DiskSpace.Of(Path.Combine(temp.Path, "not", "made", "yet"));
        Assert.True(space.FreeBytes > 0);
        Assert.StartsWith("/", space.MountPoint);
        var e = Assert.Throws<DiskFullException>(() => DiskSpace.Require(temp.Path, long.MaxValue, "the test's checkpoint"));
        Assert.Contains("not enough disk space for the test's checkpoint", e.Message);
        Assert.Contains(temp.Path, e.Message);
    }

    [TmpfsFact]
    public void A_real_full_file_system_is_reported_as_such()
    {
        using var mount = new SmallTmpfs("64k");
        string path = Path.Combine(mount.Path, "big.bin");
        var e = Assert.Throws<DiskFullException>(() => AtomicFile.Write(path, stream => stream.Write(new byte[1 << 20]), expectedBytes: 1 << 20));
        Assert.Contains("no space left on device while writing", e.Message);
        Assert.Contains($"tmpfs mounted at {mount.Path}", e.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(mount.Path));
    }

    [TmpfsFact]
    public void A_run_that_fills_its_disk_anyway_says_so_instead_of_an_internal_error()
    {
        using var temp = new TestModels.TempFolder();
        string model = Cli.CliHarness.TinyModelFolder(temp), data = Cli.CliHarness.ToyCsv(temp, "train.csv", 40, 1);
        using var mount = new SmallTmpfs("96k");
        // The start's check is told there is room (the override), so the run begins and its first save meets the full disk.
        var (code, output, error) = CliProcess.Run(["train", "--model", model, "--train", data, "--epochs", "1", "--batch-size", "8",
            "--out", Path.Combine(mount.Path, "run")], new Dictionary<string, string> { [DiskSpace.Variable] = "10G" });
        Assert.True(code == 1, $"exit {code}\n{error}\n{output}");
        Assert.Contains("no space left on device while writing " + mount.Path, error);
        Assert.DoesNotContain("internal error", error);
    }
}

/// <summary>Runs only where a small tmpfs can be mounted (Linux, as root with the right to mount); skipped elsewhere.</summary>
public sealed class TmpfsFactAttribute : FactAttribute
{
    static readonly Lazy<bool> CanMount = new(() =>
    {
        if (!OperatingSystem.IsLinux() || !Environment.IsPrivilegedProcess) return false;
        try
        {
            using var probe = new SmallTmpfs("16k");
            return true;
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return false;
        }
    });

    public TmpfsFactAttribute()
    {
        if (!CanMount.Value) Skip = "mounting a tmpfs needs Linux and root with CAP_SYS_ADMIN; the disk-full report is tested with a fake error too";
    }
}

/// <summary>A tmpfs of the given size mounted on a fresh folder, unmounted and removed on dispose.</summary>
sealed class SmallTmpfs : IDisposable
{
    public SmallTmpfs(string size)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "sharptune-tmpfs-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
        if (Command("mount", "-t", "tmpfs", "-o", $"size={size}", "tmpfs", Path) != 0)
        {
            Directory.Delete(Path);
            throw new InvalidOperationException($"mount -t tmpfs on {Path} failed");
        }
    }

    public string Path { get; }

    public void Dispose()
    {
        Command("umount", Path);
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }

    static int Command(string name, params string[] args)
    {
        var start = new ProcessStartInfo(name) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        process.WaitForExit();
        return process.ExitCode;
    }
}
