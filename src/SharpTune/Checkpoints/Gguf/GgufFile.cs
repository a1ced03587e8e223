namespace SharpTune.Checkpoints.Gguf;

/// <summary>
/// A parsed GGUF file (ggml docs/gguf.md, versions 2 and 3): metadata and tensor infos, every field
/// validated against the file's length before anything is allocated or trusted. Tensor data is read
/// on demand by <see cref="ReadTensor"/>, never the whole file at once.
/// </summary>
public sealed partial class GgufFile
{
    const uint Magic = 0x46554747; // "GGUF" read as a little-endian u32
    public const uint DefaultAlignment = 32;
    const int MaxDims = 4;

    readonly Dictionary<string, GgufMetadataValue> metadata;
    readonly Dictionary<string, GgufTensorInfo> tensorsByName;

    public string Path { get; }
    public uint Version { get; }
    public long FileLength { get; }
    /// <summary>Byte where the data section starts; tensor offsets count from here.</summary>
    public long DataStart { get; }
    public uint Alignment { get; }
    public IReadOnlyDictionary<string, GgufMetadataValue> Metadata => metadata;
    /// <summary>Tensors in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    GgufFile(string path, uint version, long fileLength, long dataStart, uint alignment,
        Dictionary<string, GgufMetadataValue> metadata, List<GgufTensorInfo> tensors)
    {
        (Path, Version, FileLength, DataStart, Alignment) = (path, version, fileLength, dataStart, alignment);
        this.metadata = metadata;
        Tensors = tensors;
        tensorsByName = tensors.ToDictionary(t => t.Name);
    }

    /// <summary>Parses the header of the GGUF file at <paramref name="path"/>.</summary>
    public static GgufFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"GGUF file not found: {path}", path);
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        return Parse(file, path);
    }

    /// <summary>Parses a header from <paramref name="stream"/> (tests use memory streams); <paramref name="path"/> names it in errors and is where tensors are read from.</summary>
    internal static GgufFile Parse(Stream stream, string path)
    {
        long fileLength = stream.Length;
        var r = new GgufHeaderReader(stream, path, fileLength);
        if (fileLength < 24) throw r.Error($"not a GGUF file (only {fileLength} bytes; the header alone takes 24)");
        uint magic = r.U32("magic");
        if (magic != Magic) throw r.Error($"not a GGUF file (magic is 0x{magic:X8}, expected \"GGUF\")");
        uint version = r.U32("version");
        if (version is not (2 or 3))
            throw r.Error(version is 1 ? "GGUF version 1 is not supported (expected 2 or 3)"
                : (version & 0xFFFF) == 0 ? $"GGUF version 0x{version:X8} looks big-endian; only little-endian files are supported"
                : $"GGUF version {version} is not supported (expected 2 or 3)");
        // Smallest tensor info: empty name (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
        long tensorCount = r.Count("tensor count", 32);
        // Smallest metadata entry: empty key (8) + type (4) + a one-byte value.
        long metadataCount = r.Count("metadata count", 13);

        var metadata = new Dictionary<string, GgufMetadataValue>(StringComparer.Ordinal);
        for (long i = 0; i < metadataCount; i++)
        {
            string key = r.String($"key of metadata entry {i}");
            uint type = r.U32($"type of metadata '{key}'");
            if (type > (uint)GgufValueType.Float64)
                throw r.Error($"metadata '{key}' has unknown value type id {type} (expected 0-12)");
            var value = r.Value((GgufValueType)type, key);
            if (!metadata.TryAdd(key, value)) throw r.Error($"metadata key '{key}' appears twice");
        }

        uint alignment = DefaultAlignment;
        if (metadata.TryGetValue("general.alignment", out var align))
        {
            if (align is not { Type: GgufValueType.UInt32, Value: uint a } || a == 0 || (a & (a - 1)) != 0)
                throw r.Error($"general.alignment must be a u32 power of two, found {align}");
            alignment = a;
        }

        var tensors = new List<GgufTensorInfo>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (long i = 0; i < tensorCount; i++)
        {
            var info = ReadTensorInfo(r, i);
            if (!names.Add(info.Name)) throw r.Error($"tensor '{info.Name}' appears twice");
            tensors.Add(info);
        }

        long dataStart = AlignUp(r.Position, alignment);
        if (dataStart > fileLength && tensors.Count > 0)
            throw r.Error($"data section would start at byte {dataStart}, past the end of the {fileLength}-byte file (truncated)");
        long dataLength = Math.Max(0, fileLength - dataStart);
        foreach (var t in tensors)
        {
            if (t.Offset % alignment != 0)
                throw r.Error($"tensor '{t.Name}' starts at data offset {t.Offset}, not a multiple of the alignment {alignment}");
            if (t.Offset > dataLength || t.ByteSize > dataLength - t.Offset)
                throw r.Error($"tensor '{t.Name}' ({t.Type} {t.ShapeText}, {t.ByteSize} bytes at data offset {t.Offset}) lies past the end of the {dataLength} data bytes (truncated file?)");
        }
        var sorted = tensors.Where(t => t.ByteSize > 0).OrderBy(t => t.Offset).ToList();
        for (int i = 1; i < sorted.Count; i++)
            if (sorted[i].Offset < sorted[i - 1].Offset + sorted[i - 1].ByteSize)
                throw r.Error($"tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap in the data section");
        return new GgufFile(path, version, fileLength, dataStart, alignment, metadata, tensors);
    }

    static GgufTensorInfo ReadTensorInfo(GgufHeaderReader r, long index)
    {
        string name = r.String($"name of tensor {index}");
        uint nDims = r.U32($"n_dims of tensor '{name}'");
        if (nDims is 0 or > MaxDims) throw r.Error($"tensor '{name}' has {nDims} dimensions (expected 1 to {MaxDims})");
        var dims = new long[nDims];
        long elements = 1;
        for (int d = 0; d < nDims; d++)
        {
            ulong ne = r.U64($"dimension {d} of tensor '{name}'");
            if (ne == 0 || ne > long.MaxValue)
                throw r.Error($"tensor '{name}' has dimension {d} = {ne} (expected a positive size)");
            dims[d] = (long)ne;
            if (elements > long.MaxValue / dims[d])
                throw r.Error($"tensor '{name}' dims [{string.Join(", ", dims.Take(d + 1))}] hold more elements than fit in 64 bits");
            elements *= dims[d];
        }
        uint rawType = r.U32($"type of tensor '{name}'");
        var type = (GgufTensorType)rawType;
        if (!GgufTensorTypes.IsKnown(type)) throw r.Error($"tensor '{name}' has unknown ggml type id {rawType}");
        int blockSize = GgufTensorTypes.BlockSize(type);
        if (dims[0] % blockSize != 0)
            throw r.Error($"tensor '{name}' is {type} with rows of {dims[0]} elements, not a multiple of its block size {blockSize}");
        long blocks = elements / blockSize;
        int blockBytes = GgufTensorTypes.BlockBytes(type);
        if (blocks > long.MaxValue / blockBytes) throw r.Error($"tensor '{name}' would take more than 2^63 bytes");
        ulong offset = r.U64($"data offset of tensor '{name}'");
        if (offset > long.MaxValue) throw r.Error($"tensor '{name}' has data offset {offset}, past any file");
        return new GgufTensorInfo(name, dims, type, (long)offset, blocks * blockBytes);
    }

    internal static long AlignUp(long position, uint alignment) => (position + alignment - 1) / alignment * alignment;

    public bool HasTensor(string name) => tensorsByName.ContainsKey(name);

    public bool TryGetTensor(string name, out GgufTensorInfo info) => tensorsByName.TryGetValue(name, out info!);

    /// <summary>The tensor named <paramref name="name"/>; an error naming the file and the tensor when absent.</summary>
    public GgufTensorInfo GetTensor(string name) => tensorsByName.TryGetValue(name, out var info) ? info
        : throw new InvalidDataException($"{Path}: tensor '{name}' is missing");

    public override string ToString() => $"{Path} (GGUF v{Version}, {Tensors.Count} tensors, {Metadata.Count} metadata keys)";
}
