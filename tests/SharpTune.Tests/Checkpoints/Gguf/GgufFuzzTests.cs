using SharpTune.Models.Decoders.Gguf;
using System.Text;
using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Checkpoints.Gguf;

/// <summary>Truncated, corrupted and hostile GGUF files: always InvalidDataException (or NotSupportedException for valid but unsupported content), never another exception, allocation or hang.</summary>
public class GgufFuzzTests
{
    /// <summary>A small but complete llama file: tokenizer metadata, F32 and Q8_0 tensors.</summary>
    static byte[] CleanFile(TestModels.TempFolder temp)
    {
        string path = temp.File("clean.gguf");
        var s = TinyDecoderSizes.Odd with { Hidden = 64, Heads = 4, KvHeads = 2, Intermediate = 37 };
        GgufTestModels.WriteLlama(path, "llama", s, GgufTestModels.HfLlama(s, bias: false, tied: true),
            edit: w => w.AddTensor("extra.q8", randn(3, 64), GgufTensorType.Q8_0));
        return File.ReadAllBytes(path);
    }

    /// <summary>Everything a loader does with a file: header, every tensor, the model map.</summary>
    static void LoadAll(string path)
    {
        var file = GgufFile.Open(path);
        foreach (var t in file.Tensors) file.ReadTensor(t.Name).Dispose();
        foreach (var (_, t) in GgufModelMap.Create(file).ReadTensors()) t.Dispose();
    }

    static void AssertClearError(string path, string? expected = null)
    {
        try
        {
            LoadAll(path);
            Assert.Fail($"{path} loaded without an error{(expected is null ? "" : $"; expected '{expected}'")}");
        }
        catch (InvalidDataException e)
        {
            Assert.StartsWith(path + ": ", e.Message);
            if (expected is not null) Assert.Contains(expected, e.Message);
        }
    }

    [Fact]
    public void The_clean_file_loads()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("ok.gguf");
        File.WriteAllBytes(path, CleanFile(temp));
        LoadAll(path);
    }

    [Fact]
    public void Truncation_at_every_header_position_and_through_the_data_is_a_clear_error()
    {
        using var temp = new TestModels.TempFolder();
        byte[] clean = CleanFile(temp);
        var file = GgufFile.Open(temp.File("clean.gguf"));
        long dataEnd = file.DataStart + file.Tensors.Max(t => t.Offset + t.ByteSize);
        // Every header byte, parsed from memory (thousands of cuts) ...
        for (int length = 0; length <= file.DataStart; length++)
        {
            var error = Assert.Throws<InvalidDataException>(() => GgufFile.Parse(new MemoryStream(clean[..length]), "cut.gguf"));
            Assert.StartsWith("cut.gguf: ", error.Message);
        }
        // ... then through the data section, from disk.
        string path = temp.File("cut.gguf");
        var cuts = Enumerable.Range((int)file.DataStart, (int)(dataEnd - file.DataStart)).Where(i => i % 97 == 0).Append((int)dataEnd - 1);
        foreach (int length in cuts)
        {
            File.WriteAllBytes(path, clean[..length]);
            AssertClearError(path);
        }
    }

    [Fact]
    public void Random_byte_corruptions_give_invalid_data_or_not_supported_never_another_exception()
    {
        using var temp = new TestModels.TempFolder();
        byte[] clean = CleanFile(temp);
        long headerEnd = GgufFile.Open(temp.File("clean.gguf")).DataStart;
        var random = new Random(23);
        string path = temp.File("flipped.gguf");
        for (int trial = 0; trial < 400; trial++)
        {
            var bytes = (byte[])clean.Clone();
            // Mostly in the header, where every byte steers the parser; sometimes anywhere.
            for (int flips = random.Next(1, 4); flips > 0; flips--)
                bytes[random.Next(trial % 4 == 0 ? bytes.Length : (int)headerEnd)] = (byte)random.Next(256);
            File.WriteAllBytes(path, bytes);
            try { LoadAll(path); }
            catch (InvalidDataException e) { Assert.StartsWith(path + ": ", e.Message); }
            catch (NotSupportedException e) { Assert.Contains("not supported", e.Message); }
        }
    }

    /// <summary>Builds raw GGUF bytes field by field.</summary>
    public sealed class Raw
    {
        readonly MemoryStream stream = new();
        readonly BinaryWriter w;
        public Raw(uint version = 3, ulong tensors = 0, ulong kvs = 0, string magic = "GGUF")
        {
            w = new BinaryWriter(stream);
            w.Write(Encoding.ASCII.GetBytes(magic)); w.Write(version); w.Write(tensors); w.Write(kvs);
        }
        public Raw U32(uint v) { w.Write(v); return this; }
        public Raw U64(ulong v) { w.Write(v); return this; }
        public Raw Byte(byte v) { w.Write(v); return this; }
        public Raw Str(string s) => Bytes(Encoding.UTF8.GetBytes(s), s.Length);
        public Raw Bytes(byte[] b, long claimed) { w.Write((ulong)claimed); w.Write(b); return this; }
        public Raw Tensor(string name, ulong[] ne, uint type, ulong offset)
        {
            Str(name).U32((uint)ne.Length);
            foreach (ulong d in ne) U64(d);
            return U32(type).U64(offset);
        }
        public Raw Pad(int to = 32) { while (stream.Length % to != 0) w.Write((byte)0); return this; }
        public Raw Zeros(int n) { w.Write(new byte[n]); return this; }
        public string Save(TestModels.TempFolder temp) { w.Flush(); string p = temp.File($"{Guid.NewGuid():N}.gguf"); File.WriteAllBytes(p, stream.ToArray()); return p; }
    }

    public static TheoryData<string, Func<Raw>> Hostile => new()
    {
        { "not a GGUF file (magic", () => new Raw(magic: "GGML").Zeros(8) },
        { "version 1 is not supported", () => new Raw(version: 1).Zeros(8) },
        { "looks big-endian", () => new Raw(version: 0x03000000).Zeros(8) },
        { "tensor count is 18446744073709551615", () => new Raw(tensors: ulong.MaxValue).Zeros(64) },
        { "metadata count is 1152921504606846976", () => new Raw(kvs: 1UL << 60).Zeros(64) },
        { "length of key of metadata entry 0 is 9223372036854775807", () => new Raw(kvs: 1).U64(long.MaxValue).Zeros(16) },
        { "unknown value type id 13", () => new Raw(kvs: 1).Str("k").U32(13).Zeros(8) },
        { "element count of metadata 'k' is 4611686018427387904", () => new Raw(kvs: 1).Str("k").U32(9).U32(4).U64(1UL << 62).Zeros(8) },
        { "unknown array element type id 77", () => new Raw(kvs: 1).Str("k").U32(9).U32(77).U64(1).Zeros(8) },
        { "array of arrays", () => new Raw(kvs: 1).Str("k").U32(9).U32(9).U64(1).Zeros(16) },
        { "not valid UTF-8", () => new Raw(kvs: 1).Bytes([0xC3, 0x28], 2).U32(0).Byte(1).Zeros(8) },
        { "bool stored as 2", () => new Raw(kvs: 1).Str("k").U32(7).Byte(2).Zeros(8) },
        { "metadata key 'k' appears twice", () => new Raw(kvs: 2).Str("k").U32(0).Byte(1).Str("k").U32(0).Byte(1).Zeros(8) },
        { "general.alignment must be a u32 power of two", () => new Raw(kvs: 1).Str("general.alignment").U32(4).U32(48).Zeros(8) },
        { "general.alignment must be a u32 power of two", () => new Raw(kvs: 1).Str("general.alignment").U32(5).U32(32).Zeros(8) },
        { "has 5 dimensions", () => new Raw(tensors: 1).Tensor("w", [1, 1, 1, 1, 1], 0, 0).Zeros(64) },
        { "has 0 dimensions", () => new Raw(tensors: 1).Tensor("w", [], 0, 0).Zeros(64) },
        { "dimension 1 = 0", () => new Raw(tensors: 1).Tensor("w", [4, 0], 0, 0).Zeros(64) },
        { "more elements than fit in 64 bits", () => new Raw(tensors: 1).Tensor("w", [1UL << 40, 1UL << 40], 0, 0).Zeros(64) },
        { "more than 2^63 bytes", () => new Raw(tensors: 1).Tensor("w", [1UL << 31, 1UL << 31], 0, 0).Zeros(64) },
        { "unknown ggml type id 99", () => new Raw(tensors: 1).Tensor("w", [4], 99, 0).Zeros(64) },
        { "unknown ggml type id 4", () => new Raw(tensors: 1).Tensor("w", [32], 4, 0).Zeros(64) },
        { "not a multiple of its block size 32", () => new Raw(tensors: 1).Tensor("w", [33], 8, 0).Zeros(64) },
        { "not a multiple of the alignment 32", () => new Raw(tensors: 1).Tensor("w", [4], 0, 8).Pad().Zeros(64) },
        { "lies past the end", () => new Raw(tensors: 1).Tensor("w", [1024], 0, 0).Pad().Zeros(64) },
        { "lies past the end", () => new Raw(tensors: 1).Tensor("w", [4], 0, 1UL << 62).Pad().Zeros(64) },
        { "data offset 18446744073709551584", () => new Raw(tensors: 1).Tensor("w", [4], 0, ulong.MaxValue - 31).Pad().Zeros(64) },
        { "'a' and 'b' overlap", () => new Raw(tensors: 2).Tensor("a", [16], 0, 0).Tensor("b", [16], 0, 32).Pad().Zeros(128) },
        { "tensor 'a' appears twice", () => new Raw(tensors: 2).Tensor("a", [4], 0, 0).Tensor("a", [4], 0, 32).Pad().Zeros(128) },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void Hostile_headers_are_refused_before_allocating(string expected, Func<Raw> build)
    {
        using var temp = new TestModels.TempFolder();
        string path = build().Save(temp);
        var error = Assert.Throws<InvalidDataException>(() => GgufFile.Open(path));
        Assert.StartsWith(path + ": ", error.Message);
        Assert.Contains(expected, error.Message);
    }
}
