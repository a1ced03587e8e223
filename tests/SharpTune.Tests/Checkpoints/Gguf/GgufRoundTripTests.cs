using System.Buffers.Binary;
using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Checkpoints.Gguf;

public class GgufRoundTripTests
{
    static readonly Dictionary<string, object> EveryType = new()
    {
        ["t.u8"] = (byte)200, ["t.i8"] = (sbyte)-100, ["t.u16"] = (ushort)60000, ["t.i16"] = (short)-30000,
        ["t.u32"] = 4000000000u, ["t.i32"] = -2000000000, ["t.f32"] = 1.5e-5f, ["t.bool"] = true,
        ["t.string"] = "héllo ▁wörld", ["t.u64"] = ulong.MaxValue, ["t.i64"] = long.MinValue, ["t.f64"] = Math.PI,
        ["t.strings"] = new[] { "a", "", "ü▁", "<0x0A>" }, ["t.floats"] = new[] { 0.5f, -1f }, ["t.ints"] = new[] { 1, -2, 3 },
        ["t.bools"] = new[] { true, false }, ["t.bytes"] = new byte[] { 1, 2, 255 }, ["t.doubles"] = new[] { 1e300, -0.0 },
        ["t.u64s"] = new ulong[] { 7, ulong.MaxValue }, ["t.i16s"] = new short[] { -1, 2 }, ["t.empty"] = Array.Empty<uint>(),
    };

    [Fact]
    public void Metadata_of_every_type_round_trips_with_its_type()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("meta.gguf");
        var w = new GgufWriter();
        foreach (var (k, v) in EveryType) w.Set(k, v);
        w.Save(path);

        var file = GgufFile.Open(path);
        Assert.Equal(3u, file.Version);
        Assert.Empty(file.Tensors);
        Assert.Equal(EveryType.Keys.Order(), file.Metadata.Keys.Order());
        foreach (var (k, v) in EveryType)
        {
            var stored = file.Metadata[k];
            Assert.Equal(GgufMetadataValue.From(v).Type, stored.Type);
            if (v is Array a) Assert.Equal(a.Cast<object>(), ((Array)stored.Value).Cast<object>());
            else Assert.Equal(v, stored.Value);
        }
        Assert.Equal(-2000000000L, file.GetInt("t.i32"));
        Assert.Equal(200L, file.GetInt("t.u8"));
        Assert.Equal(1.5e-5, file.GetFloat("t.f32"), 1e-12);
        Assert.Equal("héllo ▁wörld", file.GetString("t.string"));
        Assert.Equal(["a", "", "ü▁", "<0x0A>"], file.GetStringArray("t.strings"));
        Assert.Equal([1L, -2L, 3L], file.GetArray<long>("t.ints"));
        Assert.Equal([0.5, -1.0], file.GetArray<double>("t.floats"));
        Assert.True(file.GetBool("t.bool"));
        Assert.False(file.TryGetString("nope", out _));
    }

    [Fact]
    public void Version_2_files_are_read_as_version_3()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("v2.gguf");
        new GgufWriter().Set("a", 1u).AddTensor("w", ones(2, 3)).Save(path);
        byte[] bytes = File.ReadAllBytes(path);
        bytes[4] = 2; // v2 has v3's layout (u64 counts); only v1 differed
        File.WriteAllBytes(path, bytes);
        var file = GgufFile.Open(path);
        Assert.Equal(2u, file.Version);
        Assert.Equal(6f, file.ReadTensor("w").sum().item<float>());
    }

    [Fact]
    public void Typed_getters_name_the_key_when_missing_or_of_another_type()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("meta.gguf");
        new GgufWriter().Set("a.name", "x").Set("a.big", ulong.MaxValue).Set("a.ints", new[] { 300 }).Save(path);
        var file = GgufFile.Open(path);
        Assert.Contains("'a.missing' is missing", Assert.Throws<InvalidDataException>(() => file.GetInt("a.missing")).Message);
        Assert.Contains("'a.name' is String, expected an integer", Assert.Throws<InvalidDataException>(() => file.GetInt("a.name")).Message);
        Assert.Contains("'a.big'", Assert.Throws<InvalidDataException>(() => file.GetInt("a.big")).Message);
        Assert.Contains("'a.ints'", Assert.Throws<InvalidDataException>(() => file.GetArray<byte>("a.ints")).Message);
        Assert.Contains("'a.ints'", Assert.Throws<InvalidDataException>(() => file.GetStringArray("a.ints")).Message);
        Assert.Contains(path, Assert.Throws<InvalidDataException>(() => file.GetString("a.ints")).Message);
    }

    [Fact]
    public void Float_tensors_round_trip_exactly_and_q8_0_within_half_a_step()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("tensors.gguf");
        manual_seed(3);
        var f32 = randn(3, 5, 7);
        var f16 = randn(7, 3).to(ScalarType.Float16);
        var bf16 = randn(11).to(ScalarType.BFloat16);
        var q8 = randn(5, 64) * 3;
        new GgufWriter().Set("general.alignment", 64u)
            .AddTensor("f32", f32).AddTensor("f16", f16, GgufTensorType.F16).AddTensor("bf16", bf16, GgufTensorType.BF16)
            .AddTensor("q8", q8, GgufTensorType.Q8_0).Save(path);

        var file = GgufFile.Open(path);
        Assert.Equal(64u, file.Alignment);
        Assert.Equal(0, file.DataStart % 64);
        Assert.All(file.Tensors, t => Assert.Equal(0, t.Offset % 64));
        Assert.Equal([7L, 5, 3], file.GetTensor("f32").Dims);
        Assert.Equal([3L, 5, 7], file.GetTensor("f32").Shape);
        Assert.Equal(GgufTensorType.Q8_0, file.GetTensor("q8").Type);
        Assert.Equal(5 * 2 * 34, file.GetTensor("q8").ByteSize);

        Assert.True(file.ReadTensor("f32").eq(f32).all().item<bool>());
        Assert.True(file.ReadTensor("f16", ScalarType.Float16).eq(f16).all().item<bool>());
        Assert.True(file.ReadTensor("bf16", ScalarType.BFloat16).eq(bf16).all().item<bool>());
        Assert.True(file.ReadTensor("f16").eq(f16.to(ScalarType.Float32)).all().item<bool>());
        var back = file.ReadTensor("q8");
        Assert.Equal(q8.shape, back.shape);
        // Each 32-value block's step is max|x|/127 (rounded to f16); the error is at most half a step.
        var step = q8.reshape(5, 2, 32).abs().amax([2], keepdim: true) / 127;
        var error = (back - q8).reshape(5, 2, 32).abs();
        Assert.True((error <= step * 0.5 + 1e-3).all().item<bool>());
    }

    [Fact]
    public void Q8_0_and_q4_0_blocks_decode_by_hand()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("blocks.gguf");
        var q8 = new byte[34];
        BinaryPrimitives.WriteUInt16LittleEndian(q8, BitConverter.HalfToUInt16Bits((Half)0.5f));
        for (int j = 0; j < 32; j++) q8[2 + j] = (byte)(sbyte)(j - 16);
        var q4 = new byte[18];
        BinaryPrimitives.WriteUInt16LittleEndian(q4, BitConverter.HalfToUInt16Bits((Half)2f));
        for (int j = 0; j < 16; j++) q4[2 + j] = (byte)(j | (15 - j) << 4); // element j = j−8, element j+16 = 7−j
        new GgufWriter().AddRawTensor("q8", [32], GgufTensorType.Q8_0, q8).AddRawTensor("q4", [32], GgufTensorType.Q4_0, q4).Save(path);

        var file = GgufFile.Open(path);
        Assert.Equal(Enumerable.Range(0, 32).Select(j => (j - 16) * 0.5f).ToArray(), file.ReadTensor("q8").data<float>().ToArray());
        var expected = Enumerable.Range(0, 16).Select(j => (j - 8) * 2f).Concat(Enumerable.Range(0, 16).Select(j => (7 - j) * 2f));
        Assert.Equal(expected.ToArray(), file.ReadTensor("q4").data<float>().ToArray());
    }

    [Fact]
    public void Unsupported_types_are_refused_by_name()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("q2k.gguf");
        new GgufWriter().AddRawTensor("w", [1, 256], GgufTensorType.Q2_K, new byte[84]).Save(path);
        var file = GgufFile.Open(path);
        Assert.Equal(GgufTensorType.Q2_K, file.GetTensor("w").Type);
        var error = Assert.Throws<NotSupportedException>(() => file.ReadTensor("w"));
        Assert.Contains("Q2_K is not supported; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K", error.Message);
        Assert.Contains("'w'", error.Message);
        Assert.Contains("tensor 'nope' is missing", Assert.Throws<InvalidDataException>(() => file.ReadTensor("nope")).Message);
    }

    [Fact]
    public void The_writer_refuses_what_gguf_cannot_hold()
    {
        Assert.Throws<ArgumentException>(() => new GgufWriter().Set("general.alignment", 48u));
        Assert.Throws<ArgumentException>(() => new GgufWriter().Set("x", new object()));
        Assert.Throws<ArgumentException>(() => new GgufWriter().AddTensor("w", zeros(2, 33), GgufTensorType.Q8_0));
        Assert.Throws<NotSupportedException>(() => new GgufWriter().AddTensor("w", zeros(2, 256), GgufTensorType.Q4_K));
        Assert.Throws<ArgumentException>(() => new GgufWriter().AddTensor("w", zeros(2)).AddTensor("w", zeros(2)));
    }
}
