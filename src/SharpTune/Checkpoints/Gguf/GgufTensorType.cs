namespace SharpTune.Checkpoints.Gguf;

/// <summary>ggml tensor types as numbered in ggml.h (the ids stored in GGUF tensor infos).</summary>
public enum GgufTensorType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41, Q2_0 = 42,
}

/// <summary>
/// Block layout of every ggml type (elements per block, bytes per block, from the block structs in
/// ggml-common.h), so a file's byte ranges can be validated even for types we do not dequantize.
/// </summary>
public static class GgufTensorTypes
{
    static readonly Dictionary<GgufTensorType, (int BlockSize, int BlockBytes)> Layouts = new()
    {
        [GgufTensorType.F32] = (1, 4), [GgufTensorType.F16] = (1, 2), [GgufTensorType.BF16] = (1, 2),
        [GgufTensorType.Q4_0] = (32, 18), [GgufTensorType.Q4_1] = (32, 20), [GgufTensorType.Q5_0] = (32, 22),
        [GgufTensorType.Q5_1] = (32, 24), [GgufTensorType.Q8_0] = (32, 34), [GgufTensorType.Q8_1] = (32, 36),
        [GgufTensorType.Q2_K] = (256, 84), [GgufTensorType.Q3_K] = (256, 110), [GgufTensorType.Q4_K] = (256, 144),
        [GgufTensorType.Q5_K] = (256, 176), [GgufTensorType.Q6_K] = (256, 210), [GgufTensorType.Q8_K] = (256, 292),
        [GgufTensorType.IQ2_XXS] = (256, 66), [GgufTensorType.IQ2_XS] = (256, 74), [GgufTensorType.IQ3_XXS] = (256, 98),
        [GgufTensorType.IQ1_S] = (256, 50), [GgufTensorType.IQ4_NL] = (32, 18), [GgufTensorType.IQ3_S] = (256, 110),
        [GgufTensorType.IQ2_S] = (256, 82), [GgufTensorType.IQ4_XS] = (256, 136), [GgufTensorType.I8] = (1, 1),
        [GgufTensorType.I16] = (1, 2), [GgufTensorType.I32] = (1, 4), [GgufTensorType.I64] = (1, 8),
        [GgufTensorType.F64] = (1, 8), [GgufTensorType.IQ1_M] = (256, 56), [GgufTensorType.TQ1_0] = (256, 54),
        [GgufTensorType.TQ2_0] = (256, 66), [GgufTensorType.MXFP4] = (32, 17), [GgufTensorType.NVFP4] = (64, 36),
        [GgufTensorType.Q1_0] = (128, 18), [GgufTensorType.Q2_0] = (64, 18),
    };

    /// <summary>The types <see cref="GgufFile.ReadTensor"/> dequantizes.</summary>
    public static IReadOnlyList<GgufTensorType> Supported { get; } =
    [
        GgufTensorType.F32, GgufTensorType.F16, GgufTensorType.BF16, GgufTensorType.Q8_0,
        GgufTensorType.Q4_0, GgufTensorType.Q4_1, GgufTensorType.Q5_0, GgufTensorType.Q5_1,
        GgufTensorType.Q4_K, GgufTensorType.Q5_K, GgufTensorType.Q6_K,
    ];

    public static bool IsKnown(GgufTensorType type) => Layouts.ContainsKey(type);

    public static bool IsSupported(GgufTensorType type) => Supported.Contains(type);

    /// <summary>Elements per block (1 for plain types, 32 or 256 for quantized ones).</summary>
    public static int BlockSize(GgufTensorType type) => Layouts[type].BlockSize;

    /// <summary>Bytes per block.</summary>
    public static int BlockBytes(GgufTensorType type) => Layouts[type].BlockBytes;

    internal static string SupportedList => string.Join(", ", Supported);
}
