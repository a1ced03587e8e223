using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace SharpTune.Checkpoints;

/// <summary>
/// One tensor of a checkpoint, not yet read: its name and shape, checked before any data is, then read straight into a
/// tensor the caller holds (a model's parameter), converting its dtype on the way, a few megabytes at a time. Loading a
/// model this way never holds a second copy of the model, nor of its largest tensor.
/// </summary>
public interface ICheckpointTensor
{
    /// <summary>The name in the checkpoint's own naming (Hugging Face's for a folder, already mapped for a GGUF file).</summary>
    string Name { get; }

    /// <summary>The PyTorch shape the tensor has once read.</summary>
    long[] Shape { get; }

    /// <summary>Whether the stored values are floating-point (quantized blocks count: they decode to floats).</summary>
    bool IsFloatingPoint { get; }

    /// <summary>Fills <paramref name="destination"/> (contiguous, of <see cref="Shape"/>, any floating dtype) with the values.</summary>
    void ReadInto(Tensor destination);
}

/// <summary>
/// A tensor already in memory, as a checkpoint tensor (a pickle file, tensors a caller built). With <paramref name="readOnce"/>
/// the tensor is disposed as soon as it has been copied, so a loader frees each as it goes; otherwise the caller keeps it.
/// </summary>
public sealed class InMemoryCheckpointTensor(string name, Tensor value, bool readOnce = false) : ICheckpointTensor
{
    readonly long[] shape = value.shape;
    readonly bool floating = value.is_floating_point();

    public string Name => name;
    public long[] Shape => shape;
    public bool IsFloatingPoint => floating;

    public void ReadInto(Tensor destination)
    {
        using (no_grad()) destination.copy_(value);
        if (readOnce) value.Dispose();
    }
}

/// <summary>
/// Copies raw little-endian values read from a file into a tensor, converting float32, float16 and bfloat16 in managed code
/// chunk by chunk through one pooled buffer, straight into the tensor's memory. No torch temporaries: allocating and
/// freeing a multi-megabyte tensor per chunk leaves glibc's heap holding freed memory (its mmap threshold rises to the
/// largest block freed), which grew a bf16 load's peak by a fifth of the model.
/// </summary>
internal static class TensorStreaming
{
    /// <summary>Bytes read per chunk: enough to amortize each read, small beside any model.</summary>
    public const int ChunkBytes = 8 << 20;

    /// <summary>
    /// Fills <paramref name="destination"/> with <c>destination.numel()</c> values of <paramref name="fileType"/> that
    /// <paramref name="read"/> copies into a span from a byte offset of the tensor's data. Same dtype: read straight into
    /// the destination's storage; float types: converted chunk by chunk; anything else through torch's copy.
    /// </summary>
    public static void ReadInto(Tensor destination, ScalarType fileType, Action<Span<byte>, long> read)
    {
        if (!destination.is_contiguous()) throw new ArgumentException("the destination of a checkpoint tensor must be contiguous");
        long count = destination.numel();
        int size = ElementSize(fileType);
        if (destination.dtype == fileType && count * size <= int.MaxValue)
        {
            if (count > 0) read(destination.bytes, 0);
            return;
        }
        using var _ = no_grad();
        using var flat = destination.view(-1);
        long chunk = Math.Max(1, Math.Min(count, ChunkBytes / size));
        if (IsFloat(fileType) && IsFloat(destination.dtype))
        {
            byte[] raw = ArrayPool<byte>.Shared.Rent((int)(chunk * size));
            try
            {
                for (long start = 0; start < count; start += chunk)
                {
                    int n = (int)Math.Min(chunk, count - start);
                    read(raw.AsSpan(0, n * size), start * size);
                    using var target = flat.narrow(0, start, n);
                    Convert(raw.AsSpan(0, n * size), fileType, target.bytes, destination.dtype);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(raw);
            }
            return;
        }
        using var buffer = empty(chunk, fileType);
        var bytes = buffer.bytes;
        for (long start = 0; start < count; start += chunk)
        {
            long n = Math.Min(chunk, count - start);
            read(bytes[..(int)(n * size)], start * size);
            using var source = buffer.narrow(0, 0, n);
            using var target = flat.narrow(0, start, n);
            target.copy_(source);
        }
    }

    /// <summary>Writes <paramref name="values"/> into <paramref name="flat"/> (1-D) from element <paramref name="start"/> on, in its dtype.</summary>
    public static void WriteFloats(ReadOnlySpan<float> values, Tensor flat, long start)
    {
        using var target = flat.narrow(0, start, values.Length);
        Convert(MemoryMarshal.AsBytes(values), ScalarType.Float32, target.bytes, flat.dtype);
    }

    public static bool IsFloat(ScalarType type) => type is ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16;

    /// <summary>
    /// Converts little-endian values between float32, float16 and bfloat16 with torch's rounding (to nearest, ties to even;
    /// NaN stays NaN), so a model loaded this way equals one converted by <c>Tensor.to</c>.
    /// </summary>
    static void Convert(ReadOnlySpan<byte> source, ScalarType from, Span<byte> target, ScalarType to)
    {
        if (from == to)
        {
            source.CopyTo(target);
            return;
        }
        int n = source.Length / ElementSize(from);
        for (int i = 0; i < n; i++)
        {
            float value = from switch
            {
                ScalarType.Float32 => BinaryPrimitives.ReadSingleLittleEndian(source[(4 * i)..]),
                ScalarType.Float16 => (float)BinaryPrimitives.ReadHalfLittleEndian(source[(2 * i)..]),
                _ => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..]) << 16),
            };
            switch (to)
            {
                case ScalarType.Float32: BinaryPrimitives.WriteSingleLittleEndian(target[(4 * i)..], value); break;
                case ScalarType.Float16: BinaryPrimitives.WriteHalfLittleEndian(target[(2 * i)..], (Half)value); break;
                default: BinaryPrimitives.WriteUInt16LittleEndian(target[(2 * i)..], ToBFloat16(value)); break;
            }
        }
    }

    /// <summary>float32 to bfloat16 as c10::BFloat16 rounds: to nearest, ties to even; any NaN becomes the quiet NaN 0x7FC0.</summary>
    static ushort ToBFloat16(float value)
    {
        if (float.IsNaN(value)) return 0x7FC0;
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    static int ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        ScalarType.Int8 or ScalarType.Byte or ScalarType.Bool => 1,
        _ => throw new ArgumentException($"no element size for {type}"),
    };
}
