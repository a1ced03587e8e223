using static TorchSharp.torch;

namespace SharpTune.Tests.Native;

/// <summary>The build step that lets TorchSharp's native library load on a libstdc++ older than GCC 13's.</summary>
public class LibTorchSharpPatchTests
{
    const string Version = "GLIBCXX_3.4.32";

    static string PackageLibrary()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        return Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
    }

    [Fact]
    public void MarkWeak_sets_only_the_weak_flag_and_is_idempotent()
    {
        string original = PackageLibrary();
        Assert.True(File.Exists(original), $"expected TorchSharp's native library at {original}");
        using var temp = new TestModels.TempFolder();
        string copy = temp.File("libLibTorchSharp.so");
        File.Copy(original, copy);

        Assert.Equal((ushort)0, ElfVersionNeedPatcher.ReadFlags(copy, Version)); // the package requires it strictly
        Assert.Equal(ElfVersionNeedPatcher.Outcome.Patched, ElfVersionNeedPatcher.MarkWeak(copy, Version));
        Assert.Equal(ElfVersionNeedPatcher.VerFlagWeak, ElfVersionNeedPatcher.ReadFlags(copy, Version));
        Assert.Equal(ElfVersionNeedPatcher.Outcome.AlreadyWeak, ElfVersionNeedPatcher.MarkWeak(copy, Version));

        byte[] before = File.ReadAllBytes(original), after = File.ReadAllBytes(copy);
        Assert.Equal(before.Length, after.Length);
        int differing = before.Zip(after).Count(p => p.First != p.Second);
        Assert.Equal(1, differing); // one byte of one vna_flags field
    }

    [Fact]
    public void A_version_the_library_does_not_need_is_left_alone()
    {
        using var temp = new TestModels.TempFolder();
        string copy = temp.File("libLibTorchSharp.so");
        File.Copy(PackageLibrary(), copy);
        Assert.Null(ElfVersionNeedPatcher.ReadFlags(copy, "GLIBCXX_99.0"));
        Assert.Equal(ElfVersionNeedPatcher.Outcome.NotRequired, ElfVersionNeedPatcher.MarkWeak(copy, "GLIBCXX_99.0"));
    }

    [Fact]
    public void A_file_that_is_not_elf_is_refused_with_its_path()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("fake.so");
        File.WriteAllText(path, "not an ELF file at all, just text that is long enough to have a header ........");
        var error = Assert.Throws<InvalidDataException>(() => ElfVersionNeedPatcher.MarkWeak(path, Version));
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void The_build_output_copy_is_patched_exactly_when_the_system_lacks_the_version()
    {
        string output = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(output), $"the build should place TorchSharp's native library at {output}");
        bool systemHasIt = ElfVersionNeedPatcher.SystemLibStdCxxDefines(Version, out _);
        ushort expected = systemHasIt ? (ushort)0 : ElfVersionNeedPatcher.VerFlagWeak;
        Assert.Equal(expected, ElfVersionNeedPatcher.ReadFlags(output, Version));
    }

    [Fact]
    public void TorchSharp_loads_and_computes()
    {
        using var x = arange(6, dtype: ScalarType.Float32).view(2, 3);
        using var y = x.matmul(x.T);
        Assert.Equal(new[] { 5f, 14f, 14f, 50f }, y.data<float>().ToArray());
    }
}
