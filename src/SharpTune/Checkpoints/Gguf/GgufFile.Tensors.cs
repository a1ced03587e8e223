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

    /// <summary>
    /// Reads tensor <paramref name="name"/> straight into <paramref name="destination"/> (contiguous, its shape, any
    /// floating dtype): plain float data of the destination's dtype lands in its storage directly; anything else is
    /// read, dequantized and converted one chunk of blocks at a time, so no whole float32 copy of the tensor is ever made.
    /// </summary>
    public unsafe void ReadInto(string name, Tensor destination)
    {
        var info = GetTensor(name);
        if (!GgufTensorTypes.IsSupported(info.Type))
            throw new NotSupportedException(
                $"{Path}: tensor '{name}' is {info.Type}; {info.Type} is not supported; supported: {GgufTensorTypes.SupportedList}");
        if (!destination.shape.SequenceEqual(info.Shape))
            throw new ArgumentException($"{Path}: tensor '{name}' has shape {info.ShapeText}, the destination [{string.Join(", ", destination.shape)}]");
        if (!destination.is_contiguous()) throw new ArgumentException($"{Path}: tensor '{name}': the destination must be contiguous");
        using var handle = File.OpenHandle(Path, FileMode.Open, FileAccess.Read, FileShare.Read);
        if (RandomAccess.GetLength(handle) != FileLength)
            throw new InvalidDataException($"{Path}: the file changed size since its header was read ({FileLength} bytes then, {RandomAccess.GetLength(handle)} now)");
        if (PlainType(info.Type) is { } plain)
        {
            TensorStreaming.ReadInto(destination, plain, (span, offset) => ReadExactly(handle, info, span, DataStart + info.Offset + offset));
            return;
        }
        if (destination.dtype == ScalarType.Float32)
        {
            Decode(handle, info, destination);
            return;
        }
        // Quantized into another dtype: decode a chunk of blocks to float32, convert it into its slice of the destination.
        using var _ = no_grad();
        using var flat = destination.view(-1);
        int blockSize = GgufTensorTypes.BlockSize(info.Type), blockBytes = GgufTensorTypes.BlockBytes(info.Type);
        long totalBlocks = info.ByteSize / blockBytes;
        // Chunks of whole blocks whose float32 values take about ChunkBytes.
        int chunkBlocks = (int)Math.Min(totalBlocks, Math.Max(1, TensorStreaming.ChunkBytes / (4 * blockSize)));
        byte[] raw = ArrayPool<byte>.Shared.Rent(chunkBlocks * blockBytes);
        float[] values = ArrayPool<float>.Shared.Rent(chunkBlocks * blockSize);
        try
        {
            for (long first = 0; first < totalBlocks; first += chunkBlocks)
            {
                int blocks = (int)Math.Min(chunkBlocks, totalBlocks - first);
                fixed (float* output = values) DecodeBlocks(handle, info, raw, first, blocks, output);
                TensorStreaming.WriteFloats(values.AsSpan(0, blocks * blockSize), flat, first * blockSize);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(raw);
            ArrayPool<float>.Shared.Return(values);
        }
    }

    /// <summary>The dtype of unquantized GGUF data, which torch reads and converts itself.</summary>
    static ScalarType? PlainType(GgufTensorType type) => type switch
    {
        GgufTensorType.F32 => ScalarType.Float32,
        GgufTensorType.F16 => ScalarType.Float16,
        GgufTensorType.BF16 => ScalarType.BFloat16,
        _ => null,
    };

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
        float* output = (float*)destination.storage<float>().data_ptr();
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(info.ByteSize, (long)chunkBlocks * blockBytes));
        try
        {
            for (long first = 0; first < totalBlocks; first += chunkBlocks)
            {
                int blocks = (int)Math.Min(chunkBlocks, totalBlocks - first);
                DecodeBlocks(handle, info, buffer, first, blocks, output + first * blockSize);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Reads <paramref name="blocks"/> blocks from block <paramref name="first"/> on and decodes them to floats at <paramref name="output"/>.</summary>
    unsafe void DecodeBlocks(SafeFileHandle handle, GgufTensorInfo info, byte[] buffer, long first, int blocks, float* output)
    {
        int blockSize = GgufTensorTypes.BlockSize(info.Type), blockBytes = GgufTensorTypes.BlockBytes(info.Type);
        ReadExactly(handle, info, buffer.AsSpan(0, blocks * blockBytes), DataStart + info.Offset + first * blockBytes);
        // Parallel over groups of blocks; each group decodes its own slice of bytes into its own slice of floats.
        const int group = 64;
        int groups = (blocks + group - 1) / group;
        var type = info.Type;
        nint chunkOut = (nint)output;
        Parallel.For(0, groups, g =>
        {
            int b0 = g * group, n = Math.Min(group, blocks - b0);
            var src = new ReadOnlySpan<byte>(buffer, b0 * blockBytes, n * blockBytes);
            var dst = new Span<float>((float*)chunkOut + (long)b0 * blockSize, n * blockSize);
            GgufDequantize.Blocks(type, src, dst);
        });
    }
}
