#nullable enable
// Compiled two ways: by MSBuild's RoslynCodeTaskFactory (build/LibTorchSharpPatch.targets), where the
// task class below is included, and linked into the test project (SHARPTUNE_TESTS), where only the
// ELF logic is, so that the patch itself is unit-tested.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

/// <summary>
/// Marks one version requirement of an ELF64 little-endian shared library as weak, by setting
/// VER_FLG_WEAK in the vna_flags of the matching Elf64_Vernaux entry of the .gnu.version_r section.
/// </summary>
public static class ElfVersionNeedPatcher
{
    public const ushort VerFlagWeak = 0x2;
    const uint ShtGnuVerneed = 0x6ffffffe;

    public enum Outcome { Patched, AlreadyWeak, NotRequired }

    /// <summary>Sets the weak flag on <paramref name="versionName"/> in <paramref name="path"/>.</summary>
    public static Outcome MarkWeak(string path, string versionName)
    {
        byte[] elf = File.ReadAllBytes(path);
        int? flagsOffset = FindVernauxFlags(elf, versionName, path);
        if (flagsOffset is null) return Outcome.NotRequired;
        ushort flags = ReadU16(elf, flagsOffset.Value);
        if ((flags & VerFlagWeak) != 0) return Outcome.AlreadyWeak;
        flags |= VerFlagWeak;
        // Write the two bytes in place: the file keeps its size, inode and every other byte.
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            stream.Position = flagsOffset.Value;
            stream.WriteByte((byte)(flags & 0xff));
            stream.WriteByte((byte)(flags >> 8));
        }
        return Outcome.Patched;
    }

    /// <summary>The vna_flags of <paramref name="versionName"/>, or null when the library does not need it.</summary>
    public static ushort? ReadFlags(string path, string versionName)
    {
        byte[] elf = File.ReadAllBytes(path);
        int? offset = FindVernauxFlags(elf, versionName, path);
        return offset is null ? null : ReadU16(elf, offset.Value);
    }

    /// <summary>True when a libstdc++ on the loader's usual paths defines <paramref name="versionName"/>.</summary>
    public static bool SystemLibStdCxxDefines(string versionName, out string? libraryPath)
    {
        string[] directories =
        {
            "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
            "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib",
        };
        byte[] needle = Encoding.ASCII.GetBytes(versionName + "\0");
        libraryPath = null;
        foreach (string directory in directories)
        {
            string candidate = Path.Combine(directory, "libstdc++.so.6");
            if (!File.Exists(candidate)) continue;
            libraryPath ??= candidate;
            if (IndexOf(File.ReadAllBytes(candidate), needle) >= 0)
            {
                libraryPath = candidate;
                return true;
            }
        }
        return false;
    }

    static int? FindVernauxFlags(byte[] elf, string versionName, string path)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException($"{path}: not an ELF file");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException($"{path}: only 64-bit little-endian ELF is supported");

        long shoff = (long)ReadU64(elf, 0x28);
        int shentsize = ReadU16(elf, 0x3A);
        int shnum = ReadU16(elf, 0x3C);
        if (shentsize < 64 || shoff <= 0 || shoff + (long)shnum * shentsize > elf.Length)
            throw new InvalidDataException($"{path}: section header table lies outside the file");

        for (int i = 0; i < shnum; i++)
        {
            int header = checked((int)(shoff + (long)i * shentsize));
            if (ReadU32(elf, header + 4) != ShtGnuVerneed) continue;

            int sectionOffset = checked((int)ReadU64(elf, header + 0x18));
            int sectionSize = checked((int)ReadU64(elf, header + 0x20));
            int linkedStrings = (int)ReadU32(elf, header + 0x28);
            int entryCount = (int)ReadU32(elf, header + 0x2C);
            if (linkedStrings >= shnum)
                throw new InvalidDataException($"{path}: .gnu.version_r links to missing section {linkedStrings}");
            int stringsHeader = checked((int)(shoff + (long)linkedStrings * shentsize));
            int stringsOffset = checked((int)ReadU64(elf, stringsHeader + 0x18));
            int stringsSize = checked((int)ReadU64(elf, stringsHeader + 0x20));

            int need = sectionOffset;
            for (int n = 0; n < entryCount; n++)
            {
                Require(elf, need, 16, sectionOffset, sectionSize, path);
                int auxCount = ReadU16(elf, need + 2);
                int aux = need + (int)ReadU32(elf, need + 8);
                for (int a = 0; a < auxCount; a++)
                {
                    Require(elf, aux, 16, sectionOffset, sectionSize, path);
                    uint nameIndex = ReadU32(elf, aux + 8);
                    if (nameIndex < stringsSize && CStringEquals(elf, stringsOffset + (int)nameIndex, versionName))
                        return aux + 4;
                    aux += (int)ReadU32(elf, aux + 12);
                }
                uint next = ReadU32(elf, need + 12);
                if (next == 0) break;
                need += (int)next;
            }
            return null;
        }
        return null;
    }

    static void Require(byte[] elf, int offset, int length, int sectionOffset, int sectionSize, string path)
    {
        if (offset < sectionOffset || offset + length > sectionOffset + sectionSize || offset + length > elf.Length)
            throw new InvalidDataException($"{path}: .gnu.version_r entry at 0x{offset:x} lies outside its section");
    }

    static bool CStringEquals(byte[] data, int offset, string expected)
    {
        if (offset + expected.Length >= data.Length) return false;
        for (int i = 0; i < expected.Length; i++)
            if (data[offset + i] != (byte)expected[i]) return false;
        return data[offset + expected.Length] == 0;
    }

    static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            if (haystack[i] != needle[0]) continue;
            int j = 1;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return i;
        }
        return -1;
    }

    static ushort ReadU16(byte[] b, int o) => (ushort)(b[o] | b[o + 1] << 8);
    static uint ReadU32(byte[] b, int o) => (uint)(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24);
    static ulong ReadU64(byte[] b, int o) => ReadU32(b, o) | (ulong)ReadU32(b, o + 4) << 32;

    /// <summary>Every libLibTorchSharp.so under the given folders.</summary>
    public static IEnumerable<string> FindLibraries(IEnumerable<string> directories)
    {
        foreach (string directory in directories)
        {
            if (string.IsNullOrEmpty(directory) || !Directory.Exists(directory)) continue;
            foreach (string file in Directory.EnumerateFiles(directory, "libLibTorchSharp.so", SearchOption.AllDirectories))
                yield return file;
        }
    }
}

#if !SHARPTUNE_TESTS
public class SharpTunePatchLibTorchSharp : Microsoft.Build.Utilities.Task
{
    public string[] Directories { get; set; } = Array.Empty<string>();
    public string VersionName { get; set; } = "";

    public override bool Execute()
    {
        if (ElfVersionNeedPatcher.SystemLibStdCxxDefines(VersionName, out string? system))
        {
            Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low,
                $"SharpTune: {system} defines {VersionName}; libLibTorchSharp.so needs no patch.");
            return true;
        }
        foreach (string library in ElfVersionNeedPatcher.FindLibraries(Directories))
        {
            var outcome = ElfVersionNeedPatcher.MarkWeak(library, VersionName);
            if (outcome == ElfVersionNeedPatcher.Outcome.Patched)
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal,
                    $"SharpTune: marked {VersionName} weak in {library} (system libstdc++ {system ?? "not found"} lacks it).");
        }
        return !Log.HasLoggedErrors;
    }
}
#endif
