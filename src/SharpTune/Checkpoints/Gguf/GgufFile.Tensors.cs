using System.Buffers;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace SharpTune.Checkpoints.Gguf;

// Reading tensor data: streamed from the file in chunks of whole blocks and decoded in parallel
// straight into the result's storage, so memory stays at one chunk plus the result.
public sealed partial class GgufFile
{
    /// <summary>Raw bytes read per chunk (whole blocks): big enough to amortize I/O, small enough to stay in cache-friendly buffers.</summary>
    const int ChunkBytes = 8 << 20;

    /// <summary>
    /// Reads tensor <paramref name="name"/> in its PyTorch shape, dequantized to float32 and converted to
    /// <paramref name="dtype"/>. Types outside <see cref="GgufTensorTypes.Supported"/> are refused by name.
    /// </summary>
    public Tensor ReadTensor(string name, ScalarType dtype = ScalarType.Float32)
    {
        var info = GetTensor(name);
        if (!GgufTensorTypes.IsSupported(info.Type))
            throw new NotSupportedException(
                $"{Path}: tensor '{name}' is {info.Type}; {info.Type} is not supported; supported: {GgufTensorTypes.SupportedList}");
        using var handle = File.OpenHandle(Path, FileMode.Open, FileAccess.Read, FileShare.Read);
        if (RandomAccess.GetLength(handle) != FileLength)
            throw new InvalidDataException($"{Path}: the file changed size since its header was read ({FileLength} bytes then, {RandomAccess.GetLength(handle)} now)");
        if (RawType(info) is { } rawType) return ReadRaw(handle, info, rawType, dtype);
        var result = empty(info.Shape, ScalarType.Float32);
        try
        {
            Decode(handle, info, result);
            if (dtype == ScalarType.Float32) return result;
            using (result) return result.to(dtype);
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>Plain float types under 2 GiB are read straight into a tensor of their own dtype; torch converts them (vectorized).</summary>
    static ScalarType? RawType(GgufTensorInfo info) => info.ByteSize > int.MaxValue ? null : info.Type switch
    {
        GgufTensorType.F32 => ScalarType.Float32,
        GgufTensorType.F16 => ScalarType.Float16,
        GgufTensorType.BF16 => ScalarType.BFloat16,
        _ => null,
    };

    Tensor ReadRaw(SafeFileHandle handle, GgufTensorInfo info, ScalarType rawType, ScalarType dtype)
    {
        var result = empty(info.Shape, rawType);
        try
        {
            ReadExactly(handle, info, result.bytes, DataStart + info.Offset);
            if (dtype == rawType) return result;
            using (result) return result.to(dtype);
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    void ReadExactly(SafeFileHandle handle, GgufTensorInfo info, Span<byte> destination, long at)
    {
        int read = 0;
        while (read < destination.Length)
        {
            int more = RandomAccess.Read(handle, destination[read..], at + read);
            if (more == 0) throw new InvalidDataException($"{Path}: tensor '{info.Name}' data ends early at byte {at + read} (file truncated while reading?)");
            read += more;
        }
    }

    unsafe void Decode(SafeFileHandle handle, GgufTensorInfo info, Tensor destination)
    {
        int blockSize = GgufTensorTypes.BlockSize(info.Type), blockBytes = GgufTensorTypes.BlockBytes(info.Type);
        long totalBlocks = info.ByteSize / blockBytes;
        int chunkBlocks = Math.Max(1, ChunkBytes / blockBytes);
        nint output = (nint)destination.storage<float>().data_ptr();
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(info.ByteSize, (long)chunkBlocks * blockBytes));
        try
        {
            for (long first = 0; first < totalBlocks; first += chunkBlocks)
            {
                int blocks = (int)Math.Min(chunkBlocks, totalBlocks - first);
                var raw = buffer.AsSpan(0, blocks * blockBytes);
                long at = DataStart + info.Offset + first * blockBytes;
                ReadExactly(handle, info, raw, at);
                float* chunkOut = (float*)output + first * blockSize;
                // Parallel over groups of blocks; each group decodes its own slice of bytes into its own slice of floats.
                const int group = 64;
                int groups = (blocks + group - 1) / group;
                var type = info.Type;
                Parallel.For(0, groups, g =>
                {
                    int b0 = g * group, n = Math.Min(group, blocks - b0);
                    var src = new ReadOnlySpan<byte>(buffer, b0 * blockBytes, n * blockBytes);
                    var dst = new Span<float>((float*)((nint)chunkOut) + (long)b0 * blockSize, n * blockSize);
                    GgufDequantize.Blocks(type, src, dst);
                });
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
