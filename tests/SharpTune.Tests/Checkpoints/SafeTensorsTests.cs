using System.Buffers.Binary;
using System.Text;
using SharpTune.Checkpoints;
using static TorchSharp.torch;

namespace SharpTune.Tests.Checkpoints;

public class SafeTensorsTests
{
    [Fact]
    public void Save_then_load_round_trips_exactly_for_every_dtype()
    {
        using var temp = new TestModels.TempFolder();
        var tensors = new Dictionary<string, Tensor>
        {
            ["a.weight"] = randn(7, 3),
            ["a.bias"] = randn(7).to(ScalarType.Float64),
            ["half"] = randn(5, 2).to(ScalarType.BFloat16),
            ["f16"] = randn(3).to(ScalarType.Float16),
            ["ids"] = randint(0, 1000, [4, 1], dtype: ScalarType.Int64),
            ["flags"] = tensor(new[] { true, false, true }),
            ["empty"] = zeros(0, 4),
        };
        string path = temp.File("model.safetensors");
        SafeTensors.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var loaded = SafeTensors.Load(path);
        Assert.Equal(tensors.Keys.OrderBy(k => k), loaded.Keys.OrderBy(k => k));
        foreach (var (key, value) in tensors)
        {
            Assert.Equal(value.dtype, loaded[key].dtype);
            Assert.Equal(value.shape, loaded[key].shape);
            Assert.True(value.eq(loaded[key]).all().item<bool>(), key);
        }
        var (_, metadata, dataStart) = SafeTensors.ReadHeader(path);
        Assert.Equal("pt", metadata["format"]);
        Assert.Equal(0, (dataStart - 8) % 8);
        Assert.Empty(Directory.GetFiles(temp.Path, "*.tmp")); // the temporary file was renamed away
    }

    static string Write(TestModels.TempFolder temp, string header, int dataBytes, ulong? claimedLength = null)
    {
        string path = temp.File($"bad-{Guid.NewGuid():N}.safetensors");
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, claimedLength ?? (ulong)json.Length);
        json.CopyTo(bytes, 8);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Theory]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}""", 10, "outside")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}""", 24, "needs 24 bytes")]
    [InlineData("""{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}}""", 2, "dtype Q4")]
    [InlineData("""{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, "negative")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"v":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}""", 8, "overlap")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0""", 4, "not valid JSON")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4611686018427387904, 4],"data_offsets":[0,4]}}""", 4, "malformed")]
    public void Corrupt_headers_are_clear_errors(string header, int dataBytes, string expected)
    {
        using var temp = new TestModels.TempFolder();
        string path = Write(temp, header, dataBytes);
        var error = Assert.Throws<InvalidDataException>(() => SafeTensors.Load(path));
        Assert.Contains(expected, error.Message);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void A_huge_claimed_header_length_is_refused_before_allocating()
    {
        using var temp = new TestModels.TempFolder();
        string path = Write(temp, "{}", 0, claimedLength: ulong.MaxValue / 2);
        var error = Assert.Throws<InvalidDataException>(() => SafeTensors.Load(path));
        Assert.Contains("truncated", error.Message);
    }

    [Fact]
    public void A_truncated_file_is_a_clear_error()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("model.safetensors");
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["w"] = randn(64, 64) });
        byte[] bytes = File.ReadAllBytes(path);
        foreach (int length in new[] { 0, 5, 40, bytes.Length - 1 })
        {
            File.WriteAllBytes(path, bytes[..length]);
            Assert.Throws<InvalidDataException>(() => SafeTensors.Load(path));
        }
    }
}
