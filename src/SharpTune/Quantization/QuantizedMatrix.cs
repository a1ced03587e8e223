using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using SharpTune.Checkpoints.Gguf;

namespace SharpTune.Quantization;

/// <summary>
/// A weight matrix (Rows = out features, Columns = in features) kept in ggml blocks, row-major: row r is
/// Columns / BlockSize(Type) blocks at <see cref="Data"/> + r·<see cref="RowBytes"/>, exactly as a GGUF file stores a
/// Linear weight (ne = [in, out]). Types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K.
/// </summary>
public sealed unsafe class QuantizedMatrix : IDisposable
{
    /// <summary>The types the kernels compute on.</summary>
    public static IReadOnlyList<GgufTensorType> SupportedTypes { get; } =
    [
        GgufTensorType.F32, GgufTensorType.F16, GgufTensorType.BF16, GgufTensorType.Q8_0, GgufTensorType.Q4_0,
        GgufTensorType.Q4_1, GgufTensorType.Q5_0, GgufTensorType.Q5_1, GgufTensorType.Q4_K, GgufTensorType.Q5_K,
        GgufTensorType.Q6_K,
    ];

    const int Alignment = 64;
    byte* data;
    readonly bool ownsData;
    readonly IDisposable? owner;

    QuantizedMatrix(GgufTensorType type, int rows, int columns, byte* data, bool ownsData, IDisposable? owner)
    {
        Type = type;
        Rows = rows;
        Columns = columns;
        RowBytes = RowBytesOf(type, columns);
        this.data = data;
        this.ownsData = ownsData;
        this.owner = owner;
    }

    public GgufTensorType Type { get; }

    /// <summary>Output features.</summary>
    public int Rows { get; }

    /// <summary>Input features (a multiple of the type's block size).</summary>
    public int Columns { get; }

    public long RowBytes { get; }

    public long ByteSize => RowBytes * Rows;

    public byte* Data => data != null ? data : throw new ObjectDisposedException(nameof(QuantizedMatrix));

    /// <summary>Bytes of one row of <paramref name="columns"/> values; throws when the type or the width does not fit.</summary>
    public static long RowBytesOf(GgufTensorType type, int columns)
    {
        if (!SupportedTypes.Contains(type))
            throw new NotSupportedException($"quantized kernels support {string.Join(", ", SupportedTypes)}, not {type}");
        int block = GgufTensorTypes.BlockSize(type);
        if (columns <= 0 || columns % block != 0)
            throw new ArgumentException($"a {type} row holds whole blocks of {block} values; {columns} columns is not a positive multiple of {block}", nameof(columns));
        return (long)columns / block * GgufTensorTypes.BlockBytes(type);
    }

    /// <summary>Copies the blocks of a (rows, columns) matrix into native memory this matrix owns (64-byte aligned).</summary>
    public static QuantizedMatrix Copy(GgufTensorType type, int rows, int columns, ReadOnlySpan<byte> blocks)
    {
        long size = CheckedSize(type, rows, columns);
        if (blocks.Length != size)
            throw new ArgumentException($"a {type} matrix of {rows} x {columns} takes {size} bytes, got {blocks.Length}", nameof(blocks));
        byte* memory = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(size, 1), Alignment);
        blocks.CopyTo(new Span<byte>(memory, blocks.Length));
        return new QuantizedMatrix(type, rows, columns, memory, ownsData: true, owner: null);
    }

    /// <summary>
    /// A matrix over blocks someone else owns (a memory-mapped file); disposing it disposes <paramref name="owner"/>
    /// when one is given.
    /// </summary>
    public static QuantizedMatrix View(GgufTensorType type, int rows, int columns, byte* data, IDisposable? owner)
    {
        CheckedSize(type, rows, columns);
        if (data == null) throw new ArgumentNullException(nameof(data));
        return new QuantizedMatrix(type, rows, columns, data, ownsData: false, owner);
    }

    /// <summary>Quantizes fp32 values (rows, columns) into blocks of <paramref name="type"/>, as llama.cpp's reference quantizers.</summary>
    public static QuantizedMatrix Quantize(GgufTensorType type, ReadOnlySpan<float> values, int rows, int columns)
    {
        long size = CheckedSize(type, rows, columns);
        if (values.Length != (long)rows * columns)
            throw new ArgumentException($"{rows} x {columns} values expected, got {values.Length}", nameof(values));
        byte* memory = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(size, 1), Alignment);
        var matrix = new QuantizedMatrix(type, rows, columns, memory, ownsData: true, owner: null);
        for (int r = 0; r < rows; r++)
            QuantizedKernels.Quantize(type, values.Slice(r * columns, columns), new Span<byte>(memory + r * matrix.RowBytes, (int)matrix.RowBytes));
        return matrix;
    }

    int finiteHalves;                  // 0 not yet checked, 1 every half finite, 2 some infinity or NaN

    /// <summary>
    /// For F16: whether no value is an infinity or NaN (exponent all ones), checked over the whole matrix on first use
    /// (a pass at memory speed, once). The AVX-512 F16 kernels then skip mapping those back; for finite values they give
    /// the same bits either way. False for other types.
    /// </summary>
    public bool FiniteHalves
    {
        get
        {
            if (Type != GgufTensorType.F16) return false;
            if (finiteHalves == 0) finiteHalves = AllHalvesFinite(Data, ByteSize / 2) ? 1 : 2;  // a benign race: both answers agree
            return finiteHalves == 1;
        }
    }

    static bool AllHalvesFinite(byte* data, long count)
    {
        var halves = (ushort*)data;
        long i = 0;
        var exponent = Vector256.Create((ushort)0x7C00);
        for (; i + 16 <= count; i += 16)
            if (Vector256.EqualsAny(Vector256.Load(halves + i) & exponent, exponent)) return false;
        for (; i < count; i++)
            if ((halves[i] & 0x7C00) == 0x7C00) return false;
        return true;
    }

    /// <summary>The blocks of one row.</summary>
    public ReadOnlySpan<byte> RowBlocks(int row)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), $"row {row} of a matrix with {Rows} rows");
        return new ReadOnlySpan<byte>(Data + row * RowBytes, checked((int)RowBytes));
    }

    static long CheckedSize(GgufTensorType type, int rows, int columns)
    {
        if (rows <= 0) throw new ArgumentException($"rows must be positive, got {rows}", nameof(rows));
        return RowBytesOf(type, columns) * rows;
    }

    public void Dispose()
    {
        if (data == null) return;
        if (ownsData) NativeMemory.AlignedFree(data);
        data = null;
        owner?.Dispose();
    }
}
