using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SharpTune.Quantization;

/// <summary>fp32 → bf16 as torch rounds it: to nearest even on the upper 16 bits, any NaN to the quiet NaN 0x7FC0.</summary>
static unsafe class Bf16
{
    [ThreadStatic] static float* scratch;
    [ThreadStatic] static int scratchLength;

    public static ushort FromSingle(float value)
    {
        if (float.IsNaN(value)) return 0x7FC0;
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    public static void FromSingle(float* src, ushort* dst, int count)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var lsb = Vector256.Create(1u);
            var bias = Vector256.Create(0x7FFFu);
            var nan = Vector256.Create(0x7FC0u);
            for (; i + 8 <= count; i += 8)
            {
                var v = Vector256.Load(src + i);
                var bits = v.AsUInt32();
                var rounded = (bits + bias + ((bits >> 16) & lsb)) >> 16;
                rounded = Vector256.ConditionalSelect(Vector256.Equals(v, v).AsUInt32(), rounded, nan);
                var packed = Vector256.Narrow(rounded, rounded); // elements 0..7 hold the 8 results
                packed.GetLower().Store(dst + i);
            }
        }
        for (; i < count; i++) dst[i] = FromSingle(src[i]);
    }

    /// <summary>A per-thread buffer of at least <paramref name="length"/> floats.</summary>
    public static float* RowScratch(int length)
    {
        if (length > scratchLength)
        {
            if (scratch != null) NativeMemory.AlignedFree(scratch);
            scratchLength = Math.Max(length, 2 * scratchLength);
            scratch = (float*)NativeMemory.AlignedAlloc((nuint)scratchLength * sizeof(float), 64);
        }
        return scratch;
    }
}
