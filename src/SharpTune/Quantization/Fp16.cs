using System.Runtime.InteropServices;

namespace SharpTune.Quantization;

/// <summary>
/// fp16 → fp32 by a 65,536-entry table (256 KiB, as ggml's ggml_table_f32_f16): .NET exposes no F16C conversion, and the
/// block kernels convert one or two scales per block, where a table load is the cheapest exact conversion.
/// </summary>
static unsafe class Fp16
{
    public static readonly float* Table = Build();

    static float* Build()
    {
        var table = (float*)NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (int h = 0; h < 65536; h++) table[h] = (float)BitConverter.UInt16BitsToHalf((ushort)h);
        return table;
    }

    public static float ToSingle(byte* p) => Table[*(ushort*)p];
}
