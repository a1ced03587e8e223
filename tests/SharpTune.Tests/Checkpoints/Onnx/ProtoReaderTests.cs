using SharpTune.Models.Bert.Onnx;
using System.Diagnostics;
using SharpTune.Checkpoints.Onnx;

namespace SharpTune.Tests.Checkpoints.Onnx;

public class ProtoReaderTests
{
    static ulong Varint(params byte[] bytes)
    {
        var reader = new ProtoReader(bytes, "test.onnx", "Test");
        ulong value = reader.ReadVarint();
        Assert.True(reader.AtEnd);
        return value;
    }

    [Fact]
    public void Varints_decode_small_multi_byte_negative_and_maximal_values()
    {
        Assert.Equal(1UL, Varint(0x01));
        Assert.Equal(300UL, Varint(0xAC, 0x02));
        Assert.Equal(ulong.MaxValue, Varint(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01));
        // int32 -1 is sign-extended to ten bytes on the wire.
        var reader = new ProtoReader(new ProtoWriter().RawVarint(unchecked((ulong)-1L)).ToArray(), "test.onnx", "Test");
        Assert.Equal(-1, reader.ReadInt32());
    }

    [Theory]
    [InlineData(new byte[] { 0x80 }, "runs past the end")]
    [InlineData(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02 }, "overflows 64 bits")]
    [InlineData(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x81, 0x01 }, "overflows 64 bits")]
    public void Bad_varints_are_rejected(byte[] bytes, string reason)
    {
        var e = Assert.Throws<InvalidDataException>(() => Varint(bytes));
        Assert.Contains("test.onnx", e.Message);
        Assert.Contains(reason, e.Message);
    }

    [Fact]
    public void A_length_of_two_to_the_sixty_is_rejected_before_allocating()
    {
        // ModelProto.graph (field 7, length-delimited) claiming 2^60 bytes.
        var bytes = new ProtoWriter().Tag(7, 2).RawVarint(1UL << 60).Raw(1, 2, 3).ToArray();
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<InvalidDataException>(() => OnnxModel.Parse(bytes, "huge.onnx"));
        Assert.True(clock.ElapsedMilliseconds < 1000);
        Assert.Contains("huge.onnx", e.Message);
        Assert.Contains($"length {1UL << 60} exceeds the 3 bytes that remain", e.Message);
    }

    [Fact]
    public void A_nested_raw_data_length_overflow_names_the_tensor_message()
    {
        var bytes = new ProtoWriter().Message(7, graph => graph.Message(5, tensor => tensor
            .PackedVarints(1, [4]).Varint(2, 1).String(8, "w").Tag(9, 2).RawVarint(long.MaxValue))).ToArray();
        var e = Assert.Throws<InvalidDataException>(() => OnnxModel.Parse(bytes, "nested.onnx"));
        Assert.Contains("nested.onnx", e.Message);
        Assert.Contains("TensorProto", e.Message);
    }

    [Fact]
    public void Dims_claiming_more_elements_than_an_array_holds_are_rejected_before_allocating()
    {
        var bytes = new ProtoWriter().Message(7, graph => graph.Message(5,
            ProtoWriter.FloatTensor("giant", [1L << 30, 1L << 30, 1L << 30], [1, 2]))).ToArray();
        var e = Assert.Throws<InvalidDataException>(() => OnnxModel.Parse(bytes, "giant.onnx"));
        Assert.Contains("'giant'", e.Message);
        Assert.Contains("too large", e.Message);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Data_that_does_not_fill_the_dims_is_rejected(bool raw)
    {
        var bytes = new ProtoWriter().Message(7, graph => graph.Message(5,
            ProtoWriter.FloatTensor("short", [2, 3], [1, 2, 3, 4, 5], raw))).ToArray();
        var e = Assert.Throws<InvalidDataException>(() => OnnxModel.Parse(bytes, "short.onnx"));
        Assert.Contains("'short' shape [2, 3] needs", e.Message);
    }

    [Fact]
    public void Tensors_decode_from_raw_data_float_data_and_int64_data()
    {
        var bytes = new ProtoWriter().Message(7, graph => graph
            .Message(5, ProtoWriter.FloatTensor("raw", [2, 2], [1, 2, 3, 4]))
            .Message(5, ProtoWriter.FloatTensor("packed", [3], [5, 6, 7], raw: false))
            .Message(5, ProtoWriter.Int64Tensor("ints", [2], [-1, 1L << 40]))).ToArray();
        var tensors = OnnxModel.Parse(bytes, "ok.onnx").Graph.Initializers;
        Assert.Equal([1f, 2, 3, 4], tensors["raw"].Floats!);
        Assert.Equal([2L, 2], tensors["raw"].Dims);
        Assert.Equal([5f, 6, 7], tensors["packed"].Floats!);
        Assert.Equal([-1L, 1L << 40], tensors["ints"].Ints!);
    }

    [Theory]
    [InlineData(3)]  // start group
    [InlineData(7)]  // not a wire type
    public void Group_and_unknown_wire_types_are_rejected(int wire)
    {
        var bytes = new ProtoWriter().Tag(14, wire).ToArray();
        var e = Assert.Throws<InvalidDataException>(() => OnnxModel.Parse(bytes, "groups.onnx"));
        Assert.Contains($"wire type {wire}", e.Message);
    }

    [Fact]
    public void External_tensor_data_is_reported_not_silently_skipped()
    {
        var bytes = new ProtoWriter().Message(7, graph => graph.Message(5, tensor => tensor
            .PackedVarints(1, [4]).Varint(2, 1).String(8, "w").Message(13, entry => entry.String(1, "location").String(2, "w.bin")))).ToArray();
        var e = Assert.Throws<InvalidDataException>(() => OnnxModel.Parse(bytes, "external.onnx"));
        Assert.Contains("external file", e.Message);
    }

    [Fact]
    public void A_file_without_a_graph_is_not_an_onnx_model()
    {
        var e = Assert.Throws<InvalidDataException>(() => OnnxModel.Parse(new ProtoWriter().Varint(1, 8).ToArray(), "empty.onnx"));
        Assert.Contains("empty.onnx: not an ONNX model", e.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Random_garbage_fails_quickly_with_invalid_data(int seed)
    {
        var bytes = new byte[1 << 20];
        new Random(seed).NextBytes(bytes);
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Load(bytes, "garbage.onnx"));
        Assert.True(clock.ElapsedMilliseconds < 2000, $"took {clock.ElapsedMilliseconds} ms");
        Assert.StartsWith("garbage.onnx: ", e.Message);
    }
}
