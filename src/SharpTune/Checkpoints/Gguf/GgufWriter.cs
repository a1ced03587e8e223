using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using static TorchSharp.torch;

namespace SharpTune.Checkpoints.Gguf;

/// <summary>
/// Writes GGUF version 3: metadata of every type, tensors as F32, F16, BF16 or Q8_0 (quantized on
/// write as ggml's quantize_row_q8_0_ref does), each tensor aligned to <c>general.alignment</c> (32 by default).
/// </summary>
public sealed class GgufWriter
{
    readonly List<KeyValuePair<string, GgufMetadataValue>> metadata = [];
    readonly List<(string Name, long[] Shape, GgufTensorType Type, Func<byte[]>? Data)> tensors = [];

    /// <summary>Adds a metadata entry; the GGUF type follows the CLR type (<c>2u</c> u32, <c>1e-5f</c> f32, <c>new[] {"a"}</c> string array).</summary>
    public GgufWriter Set(string key, object value)
    {
        var v = GgufMetadataValue.From(value);
        if (key == "general.alignment" && (v.Value is not uint a || a == 0 || (a & (a - 1)) != 0))
            throw new ArgumentException("general.alignment must be a u32 power of two");
        int existing = metadata.FindIndex(kv => kv.Key == key);
        if (existing >= 0) metadata[existing] = new(key, v);
        else metadata.Add(new(key, v));
        return this;
    }

    /// <summary>
    /// Adds <paramref name="tensor"/> (PyTorch shape; stored with dims reversed) to be written as <paramref name="type"/>.
    /// The tensor is read when <see cref="Save"/> runs.
    /// </summary>
    public GgufWriter AddTensor(string name, Tensor tensor, GgufTensorType type = GgufTensorType.F32)
    {
        if (type is not (GgufTensorType.F32 or GgufTensorType.F16 or GgufTensorType.BF16 or GgufTensorType.Q8_0))
            throw new NotSupportedException($"GgufWriter writes F32, F16, BF16 and Q8_0, not {type}");
        long[] shape = tensor.shape;
        CheckShape(name, shape, type);
        return Add(name, shape, type, () => Encode(tensor, type));
    }

    /// <summary>
    /// Adds a tensor of any ggml type whose bytes <paramref name="encode"/> makes when <see cref="Save"/> reaches it, so a
    /// writer holds one tensor at a time (merged, converted, quantized, written, freed).
    /// </summary>
    public GgufWriter AddEncodedTensor(string name, long[] shape, GgufTensorType type, Func<byte[]> encode)
    {
        CheckShape(name, shape, type);
        long expected = shape.Aggregate(1L, (a, b) => a * b) / GgufTensorTypes.BlockSize(type) * GgufTensorTypes.BlockBytes(type);
        return Add(name, shape, type, () =>
        {
            byte[] data = encode();
            return data.Length == expected ? data
                : throw new InvalidOperationException($"tensor '{name}' as {type} {Text(shape)} needs {expected} bytes, its encoder gave {data.Length}");
        });
    }

    /// <summary>Adds already-encoded data of any ggml type (tests use it for hand-built quantized blocks).</summary>
    public GgufWriter AddRawTensor(string name, long[] shape, GgufTensorType type, byte[] data)
    {
        CheckShape(name, shape, type);
        long expected = shape.Aggregate(1L, (a, b) => a * b) / GgufTensorTypes.BlockSize(type) * GgufTensorTypes.BlockBytes(type);
        if (data.Length != expected) throw new ArgumentException($"tensor '{name}' as {type} {Text(shape)} needs {expected} bytes, got {data.Length}");
        return Add(name, shape, type, () => data);
    }

    /// <summary>
    /// Adds a tensor whose header entry is written but whose data is left a hole in the file (zeros, sparse where the file
    /// system allows): tests use it for headers describing models far larger than the machine, without writing them.
    /// </summary>
    public GgufWriter AddTensorHole(string name, long[] shape, GgufTensorType type)
    {
        CheckShape(name, shape, type);
        return Add(name, shape, type, null);
    }

    GgufWriter Add(string name, long[] shape, GgufTensorType type, Func<byte[]>? data)
    {
        if (tensors.Any(t => t.Name == name)) throw new ArgumentException($"tensor '{name}' was added twice");
        tensors.Add((name, shape, type, data));
        return this;
    }

    static void CheckShape(string name, long[] shape, GgufTensorType type)
    {
        if (shape.Length is 0 or > 4 || shape.Any(d => d <= 0))
            throw new ArgumentException($"tensor '{name}' has shape {Text(shape)}: GGUF needs 1 to 4 positive dimensions");
        int block = GgufTensorTypes.BlockSize(type);
        if (shape[^1] % block != 0)
            throw new ArgumentException($"tensor '{name}' {Text(shape)} as {type} needs its last dimension to be a multiple of {block}");
    }

    static string Text(long[] shape) => $"[{string.Join(", ", shape)}]";

    static byte[] Encode(Tensor tensor, GgufTensorType type)
    {
        using var scope = NewDisposeScope();
        var t = tensor.detach().cpu();
        t = type switch
        {
            GgufTensorType.F16 => t.to(ScalarType.Float16),
            GgufTensorType.BF16 => t.to(ScalarType.BFloat16),
            _ => t.to(ScalarType.Float32),
        };
        byte[] bytes = t.contiguous().bytes.ToArray();
        return type == GgufTensorType.Q8_0 ? QuantizeQ8_0(MemoryMarshal.Cast<byte, float>(bytes)) : bytes;
    }

    /// <summary>ggml's reference Q8_0: per 32 values d = max|x|/127, q = round(x/d) (half away from zero), d stored as f16.</summary>
    internal static byte[] QuantizeQ8_0(ReadOnlySpan<float> x)
    {
        var result = new byte[x.Length / 32 * 34];
        for (int b = 0; b < x.Length / 32; b++)
        {
            var block = x.Slice(32 * b, 32);
            float amax = 0;
            foreach (float v in block) amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax / 127, id = d != 0 ? 1 / d : 0;
            BinaryPrimitives.WriteUInt16LittleEndian(result.AsSpan(34 * b), BitConverter.HalfToUInt16Bits((Half)d));
            for (int j = 0; j < 32; j++) result[34 * b + 2 + j] = (byte)(sbyte)MathF.Round(block[j] * id, MidpointRounding.AwayFromZero);
        }
        return result;
    }

    /// <summary>Writes the file atomically (temporary file, then rename).</summary>
    public void Save(string path)
    {
        uint alignment = metadata.FirstOrDefault(kv => kv.Key == "general.alignment").Value?.Value as uint? ?? GgufFile.DefaultAlignment;
        AtomicFile.Write(path, stream =>
        {
            using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            w.Write(Encoding.ASCII.GetBytes("GGUF"));
            w.Write(3u);
            w.Write((ulong)tensors.Count);
            w.Write((ulong)metadata.Count);
            foreach (var (key, value) in metadata)
            {
                WriteString(w, key);
                w.Write((uint)value.Type);
                WriteValue(w, value);
            }
            long offset = 0;
            var sizes = new List<long>();
            foreach (var (name, shape, type, _) in tensors)
            {
                WriteString(w, name);
                w.Write((uint)shape.Length);
                foreach (long d in shape.Reverse()) w.Write((ulong)d);
                w.Write((uint)type);
                w.Write((ulong)offset);
                long size = shape.Aggregate(1L, (a, b) => a * b) / GgufTensorTypes.BlockSize(type) * GgufTensorTypes.BlockBytes(type);
                sizes.Add(size);
                offset = GgufFile.AlignUp(offset + size, alignment);
            }
            w.Flush();
            Pad(stream, alignment);
            for (int i = 0; i < tensors.Count; i++)
            {
                if (tensors[i].Data is null)
                {
                    stream.SetLength(stream.Position + sizes[i]);
                    stream.Seek(sizes[i], SeekOrigin.Current);
                    Pad(stream, alignment);
                    continue;
                }
                byte[] data = tensors[i].Data!();
                if (data.Length != sizes[i]) throw new InvalidOperationException($"tensor '{tensors[i].Name}' encoded to {data.Length} bytes, expected {sizes[i]}");
                stream.Write(data);
                Pad(stream, alignment);
            }
        });
    }

    static void Pad(Stream stream, uint alignment)
    {
        long padding = GgufFile.AlignUp(stream.Position, alignment) - stream.Position;
        for (long i = 0; i < padding; i++) stream.WriteByte(0);
    }

    static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    static void WriteValue(BinaryWriter w, GgufMetadataValue v)
    {
        if (v.Value is Array array)
        {
            w.Write((uint)v.ElementType!.Value);
            w.Write((ulong)array.Length);
            foreach (object element in array) WriteScalar(w, element);
        }
        else WriteScalar(w, v.Value);
    }

    static void WriteScalar(BinaryWriter w, object value)
    {
        switch (value)
        {
            case byte x: w.Write(x); break;
            case sbyte x: w.Write(x); break;
            case ushort x: w.Write(x); break;
            case short x: w.Write(x); break;
            case uint x: w.Write(x); break;
            case int x: w.Write(x); break;
            case float x: w.Write(x); break;
            case bool x: w.Write((byte)(x ? 1 : 0)); break;
            case string x: WriteString(w, x); break;
            case ulong x: w.Write(x); break;
            case long x: w.Write(x); break;
            case double x: w.Write(x); break;
            default: throw new ArgumentException($"GGUF metadata cannot hold a {value.GetType().Name}");
        }
    }
}
