using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SharpTune.Checkpoints;

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header
/// naming each tensor's dtype, shape and byte range, then the raw little-endian data. Every header
/// field is checked against the file before any offset is trusted or any buffer allocated.
/// </summary>
public static class SafeTensors
{
    /// <summary>Headers larger than this are refused: real ones are kilobytes, a corrupt length could be anything.</summary>
    const long MaxHeaderBytes = 100L << 20;

    static readonly Dictionary<string, (ScalarType Type, int Size)> DTypes = new()
    {
        ["F64"] = (ScalarType.Float64, 8), ["F32"] = (ScalarType.Float32, 4), ["F16"] = (ScalarType.Float16, 2),
        ["BF16"] = (ScalarType.BFloat16, 2), ["I64"] = (ScalarType.Int64, 8), ["I32"] = (ScalarType.Int32, 4),
        ["I16"] = (ScalarType.Int16, 2), ["I8"] = (ScalarType.Int8, 1), ["U8"] = (ScalarType.Byte, 1),
        ["BOOL"] = (ScalarType.Bool, 1),
    };

    /// <summary>One tensor's entry in the header.</summary>
    public sealed record Entry(string Name, string DType, long[] Shape, long Begin, long End);

    /// <summary>Reads the header of <paramref name="path"/> and validates every entry against the file size.</summary>
    public static (IReadOnlyList<Entry> Entries, IReadOnlyDictionary<string, string> Metadata, long DataStart) ReadHeader(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Weights file not found: {path}", path);
        using var stream = File.OpenRead(path);
        return ReadHeader(stream, path);
    }

    static (IReadOnlyList<Entry>, IReadOnlyDictionary<string, string>, long) ReadHeader(Stream stream, string path)
    {
        long fileLength = stream.Length;
        Span<byte> lengthBytes = stackalloc byte[8];
        if (fileLength < 8 || stream.ReadAtLeast(lengthBytes, 8, throwOnEndOfStream: false) < 8)
            throw new InvalidDataException($"{path}: not a safetensors file (shorter than its 8-byte header length)");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength < 2 || headerLength > MaxHeaderBytes || (long)headerLength > fileLength - 8)
            throw new InvalidDataException(
                $"{path}: safetensors header claims {headerLength} bytes but the file has {fileLength - 8} after the length (truncated or not safetensors)");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        JsonObject header;
        try
        {
            header = JsonNode.Parse(Encoding.UTF8.GetString(headerBytes).TrimEnd(' ', '\0')) as JsonObject
                ?? throw new InvalidDataException($"{path}: safetensors header is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: safetensors header is not valid JSON ({e.Message})", e);
        }

        var entries = new List<Entry>();
        var metadata = new Dictionary<string, string>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__")
            {
                if (node is JsonObject meta)
                    foreach (var (k, v) in meta) metadata[k] = v?.ToString() ?? "";
                continue;
            }
            entries.Add(ParseEntry(name, node, path, dataLength));
        }
        CheckNoOverlap(entries, path);
        return (entries, metadata, dataStart);
    }

    static Entry ParseEntry(string name, JsonNode? node, string path, long dataLength)
    {
        string where = $"{path}: tensor '{name}'";
        try
        {
            var obj = node as JsonObject ?? throw new InvalidDataException($"{where}: entry is not an object");
            string dtype = obj["dtype"]?.GetValue<string>() ?? throw new InvalidDataException($"{where}: missing dtype");
            if (!DTypes.TryGetValue(dtype, out var info))
                throw new InvalidDataException($"{where}: dtype {dtype} is not supported ({string.Join(", ", DTypes.Keys)})");
            var shape = (obj["shape"] as JsonArray ?? throw new InvalidDataException($"{where}: missing shape"))
                .Select(d => d!.GetValue<long>()).ToArray();
            var offsets = obj["data_offsets"] as JsonArray;
            if (offsets is not { Count: 2 }) throw new InvalidDataException($"{where}: data_offsets must be [begin, end]");
            long begin = offsets[0]!.GetValue<long>(), end = offsets[1]!.GetValue<long>();
            if (shape.Any(d => d < 0)) throw new InvalidDataException($"{where}: negative dimension in shape [{string.Join(", ", shape)}]");
            long count = 1;
            foreach (long d in shape) count = checked(count * d);
            long bytes = checked(count * info.Size);
            if (begin < 0 || end < begin || end > dataLength)
                throw new InvalidDataException($"{where}: bytes [{begin}, {end}) lie outside the {dataLength} data bytes (truncated file?)");
            if (end - begin != bytes)
                throw new InvalidDataException($"{where}: shape [{string.Join(", ", shape)}] of {dtype} needs {bytes} bytes, the header gives {end - begin}");
            return new Entry(name, dtype, shape, begin, end);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException)
        {
            throw new InvalidDataException($"{where}: malformed entry ({e.Message})", e);
        }
    }

    static void CheckNoOverlap(List<Entry> entries, string path)
    {
        var sorted = entries.Where(e => e.End > e.Begin).OrderBy(e => e.Begin).ToList();
        for (int i = 1; i < sorted.Count; i++)
            if (sorted[i].Begin < sorted[i - 1].End)
                throw new InvalidDataException($"{path}: tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap");
    }

    /// <summary>Loads every tensor of the file (or those accepted by <paramref name="include"/>).</summary>
    public static Dictionary<string, Tensor> Load(string path, Func<string, bool>? include = null)
    {
        var (entries, _, dataStart) = ReadHeader(path);
        var result = new Dictionary<string, Tensor>();
        using var stream = File.OpenRead(path);
        foreach (var entry in entries)
        {
            if (include is not null && !include(entry.Name)) continue;
            var tensor = empty(entry.Shape, DTypes[entry.DType].Type);
            long length = entry.End - entry.Begin;
            if (length > 0)
            {
                stream.Position = dataStart + entry.Begin;
                var bytes = tensor.bytes; // a view of the tensor's own storage: no second copy
                stream.ReadExactly(bytes);
                if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors needs a little-endian machine");
            }
            result[entry.Name] = tensor;
        }
        return result;
    }

    /// <summary>
    /// The tensors of the file (or those accepted by <paramref name="include"/>), each read only when asked, straight into
    /// the caller's tensor: the header is checked now, the data read by <see cref="ICheckpointTensor.ReadInto"/>.
    /// </summary>
    public static IReadOnlyList<ICheckpointTensor> Open(string path, Func<string, bool>? include = null)
    {
        var (entries, _, dataStart) = ReadHeader(path);
        return entries.Where(e => include is null || include(e.Name)).Select(e => (ICheckpointTensor)new LazyTensor(path, dataStart, e)).ToList();
    }

    sealed class LazyTensor(string path, long dataStart, Entry entry) : ICheckpointTensor
    {
        public string Name => entry.Name;
        public long[] Shape => entry.Shape;
        public bool IsFloatingPoint => entry.DType is "F64" or "F32" or "F16" or "BF16";

        public void ReadInto(Tensor destination)
        {
            if (!destination.shape.SequenceEqual(entry.Shape))
                throw new ArgumentException($"{path}: tensor '{entry.Name}' has shape [{string.Join(", ", entry.Shape)}], the destination [{string.Join(", ", destination.shape)}]");
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors needs a little-endian machine");
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            TensorStreaming.ReadInto(destination, DTypes[entry.DType].Type, (span, offset) =>
            {
                long at = dataStart + entry.Begin + offset;
                for (int read = 0; read < span.Length;)
                {
                    int more = RandomAccess.Read(handle, span[read..], at + read);
                    if (more == 0) throw new InvalidDataException($"{path}: tensor '{entry.Name}' data ends early at byte {at + read} (file truncated while reading?)");
                    read += more;
                }
            });
        }
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> atomically (a temporary file in the same
    /// folder, then a rename), so a crash never leaves a half-written file under the final name.
    /// </summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var names = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
            header["__metadata__"] = new JsonObject(metadata.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
        var contiguous = new List<Tensor>();
        long offset = 0;
        foreach (string name in names)
        {
            var t = tensors[name].detach().cpu().contiguous();
            contiguous.Add(t);
            string dtype = DTypes.First(kv => kv.Value.Type == t.dtype).Key;
            long size = t.numel() * DTypes[dtype].Size;
            header[name] = new JsonObject
            {
                ["dtype"] = dtype,
                ["shape"] = new JsonArray(t.shape.Select(d => (JsonNode?)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + size),
            };
            offset += size;
        }
        byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8; // the format pads the header with spaces to 8-byte alignment
        var headerBytes = new byte[padded];
        json.CopyTo(headerBytes, 0);
        headerBytes.AsSpan(json.Length).Fill((byte)' ');

        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
            stream.Write(length);
            stream.Write(headerBytes);
            foreach (var t in contiguous)
            {
                if (t.numel() > 0) stream.Write(t.bytes);
                t.Dispose(); // a detached handle; the caller's tensor lives on
            }
        }, expectedBytes: 8 + padded + offset);
    }
}
