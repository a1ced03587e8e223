using System.Buffers.Binary;
using System.Text;

namespace SharpTune.Native;

/// <summary>
/// Writes a minimal x86-64 ELF shared object whose only contents are exported functions that each return a
/// constant <c>int</c> (<c>mov eax, imm32; ret</c>). It is what <c>gcc -shared</c> would make of
/// <c>int name(void) { return value; }</c>, without needing a compiler on the user's machine.
/// </summary>
/// <remarks>
/// Layout (file offset = virtual address in the first segment):
/// ELF header | 4 program headers | DT_HASH table | .dynsym | .dynstr | code, all in one read+execute
/// segment; the dynamic section follows in a second, read+write segment (glibc may write to it while
/// loading); PT_GNU_STACK asks for a non-executable stack. No section headers: the dynamic loader
/// reads only program headers and the dynamic section.
/// </remarks>
public static class ElfSharedObject
{
    const int HeaderSize = 64, ProgramHeaderSize = 56, SymbolSize = 24, DynamicEntrySize = 16, PageSize = 0x1000;
    const int ProgramHeaders = 4;

    public static byte[] ReturningConstants(string soname, IReadOnlyList<(string Name, int Value)> functions)
    {
        ArgumentException.ThrowIfNullOrEmpty(soname);
        if (functions.Count == 0) throw new ArgumentException("at least one function is needed", nameof(functions));

        // String table: "\0" soname "\0" name1 "\0" ...
        var strings = new MemoryStream();
        strings.WriteByte(0);
        int AddString(string s)
        {
            int offset = (int)strings.Position;
            strings.Write(Encoding.ASCII.GetBytes(s));
            strings.WriteByte(0);
            return offset;
        }
        int sonameOffset = AddString(soname);
        int[] nameOffsets = functions.Select(f => AddString(f.Name)).ToArray();
        byte[] strtab = strings.ToArray();

        int symbols = functions.Count + 1;                            // index 0 is the undefined symbol
        int hashOffset = HeaderSize + ProgramHeaders * ProgramHeaderSize;
        int hashSize = 4 * (2 + 1 + symbols);                         // nbucket, nchain, 1 bucket, chains
        int symtabOffset = Align(hashOffset + hashSize, 8);
        int strtabOffset = symtabOffset + symbols * SymbolSize;
        int codeOffset = Align(strtabOffset + strtab.Length, 16);
        const int stubSize = 16;                                      // 6 bytes of code, padded
        int textEnd = codeOffset + functions.Count * stubSize;
        int dynamicOffset = Align(textEnd, 8);
        int dynamicAddress = dynamicOffset + PageSize;                // same page offset, next page: congruent mod the alignment
        var dynamic = new (long Tag, long Value)[]
        {
            (14, sonameOffset),                                       // DT_SONAME
            (4, hashOffset),                                          // DT_HASH
            (5, strtabOffset),                                        // DT_STRTAB
            (6, symtabOffset),                                        // DT_SYMTAB
            (10, strtab.Length),                                      // DT_STRSZ
            (11, SymbolSize),                                         // DT_SYMENT
            (0, 0),                                                   // DT_NULL
        };
        int fileSize = dynamicOffset + dynamic.Length * DynamicEntrySize;
        var file = new byte[fileSize];
        var span = file.AsSpan();

        // ELF header.
        "\u007fELF"u8.CopyTo(span);
        span[4] = 2;                                                  // ELFCLASS64
        span[5] = 1;                                                  // little endian
        span[6] = 1;                                                  // EV_CURRENT
        U16(span, 16, 3);                                             // ET_DYN
        U16(span, 18, 62);                                            // EM_X86_64
        U32(span, 20, 1);                                             // e_version
        U64(span, 24, 0);                                             // e_entry
        U64(span, 32, HeaderSize);                                    // e_phoff
        U64(span, 40, 0);                                             // e_shoff: no section headers
        U32(span, 48, 0);                                             // e_flags
        U16(span, 52, HeaderSize);
        U16(span, 54, ProgramHeaderSize);
        U16(span, 56, ProgramHeaders);
        U16(span, 58, 64);                                            // e_shentsize (unused)
        U16(span, 60, 0);
        U16(span, 62, 0);

        // Program headers: text (R+X), dynamic data (R+W), PT_DYNAMIC, PT_GNU_STACK.
        ProgramHeader(span, 0, type: 1, flags: 4 | 1, offset: 0, address: 0, size: textEnd, align: PageSize);
        ProgramHeader(span, 1, type: 1, flags: 4 | 2, offset: dynamicOffset, address: dynamicAddress,
            size: dynamic.Length * DynamicEntrySize, align: PageSize);
        ProgramHeader(span, 2, type: 2, flags: 4 | 2, offset: dynamicOffset, address: dynamicAddress,
            size: dynamic.Length * DynamicEntrySize, align: 8);
        ProgramHeader(span, 3, type: 0x6474e551, flags: 4 | 2, offset: 0, address: 0, size: 0, align: 16);

        // SysV hash table with one bucket: every symbol sits on one chain, 1 -> 2 -> ... -> 0.
        U32(span, hashOffset, 1);
        U32(span, hashOffset + 4, symbols);
        U32(span, hashOffset + 8, symbols > 1 ? 1 : 0);
        for (int i = 0; i < symbols; i++)
            U32(span, hashOffset + 12 + 4 * i, i == 0 || i == symbols - 1 ? 0 : i + 1);

        // Symbols: global functions defined in "section 1" (any index other than SHN_UNDEF/ABS is relocated by the load address).
        for (int i = 0; i < functions.Count; i++)
        {
            int entry = symtabOffset + (i + 1) * SymbolSize;
            U32(span, entry, nameOffsets[i]);
            span[entry + 4] = (1 << 4) | 2;                           // STB_GLOBAL, STT_FUNC
            span[entry + 5] = 0;                                      // STV_DEFAULT
            U16(span, entry + 6, 1);
            U64(span, entry + 8, codeOffset + i * stubSize);
            U64(span, entry + 16, 6);
        }
        strtab.CopyTo(span[strtabOffset..]);

        for (int i = 0; i < functions.Count; i++)
        {
            int at = codeOffset + i * stubSize;
            span[at] = 0xB8;                                          // mov eax, imm32
            BinaryPrimitives.WriteInt32LittleEndian(span[(at + 1)..], functions[i].Value);
            span[at + 5] = 0xC3;                                      // ret
            span[(at + 6)..(at + stubSize)].Fill(0xCC);               // int3 padding
        }

        for (int i = 0; i < dynamic.Length; i++)
        {
            U64(span, dynamicOffset + i * DynamicEntrySize, dynamic[i].Tag);
            U64(span, dynamicOffset + i * DynamicEntrySize + 8, dynamic[i].Value);
        }
        return file;
    }

    static void ProgramHeader(Span<byte> file, int index, uint type, uint flags, long offset, long address, long size, long align)
    {
        int at = HeaderSize + index * ProgramHeaderSize;
        U32(file, at, type);
        U32(file, at + 4, flags);
        U64(file, at + 8, offset);
        U64(file, at + 16, address);
        U64(file, at + 24, address);                                  // p_paddr
        U64(file, at + 32, size);                                     // p_filesz
        U64(file, at + 40, size);                                     // p_memsz
        U64(file, at + 48, align);
    }

    static int Align(int value, int alignment) => (value + alignment - 1) / alignment * alignment;
    static void U16(Span<byte> s, int at, int v) => BinaryPrimitives.WriteUInt16LittleEndian(s[at..], (ushort)v);
    static void U32(Span<byte> s, int at, long v) => BinaryPrimitives.WriteUInt32LittleEndian(s[at..], (uint)v);
    static void U64(Span<byte> s, int at, long v) => BinaryPrimitives.WriteInt64LittleEndian(s[at..], v);
}
