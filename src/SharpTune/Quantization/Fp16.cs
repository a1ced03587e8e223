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

    /// <summary>
    /// The same through <see cref="Table"/> read once into a local before a loop. A method compiled before this class is
    /// initialised (no tiered compilation: the tool and the bench) checks that initialisation at every read of Table,
    /// inside the loop, and the JIT keeps the loop's vectors on the stack around that check (measured: Q4_K's
    /// accumulators stored and reloaded each super-block).
    /// </summary>
    public static float ToSingle(float* table, byte* p) => table[*(ushort*)p];
}
