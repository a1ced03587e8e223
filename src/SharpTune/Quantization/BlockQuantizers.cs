using System.Buffers.Binary;

namespace SharpTune.Quantization;

/// <summary>
/// fp32 → the 32-value block types, following llama.cpp's reference quantizers (quantize_row_q8_0_ref, q4_0, q4_1,
/// q5_0, q5_1 in ggml-quants.c) operation for operation, so the bytes equal llama.cpp's for the same input.
/// Each takes whole blocks: src holds n·32 values, dst n blocks.
/// </summary>
static class BlockQuantizers
{
    static void WriteHalf(Span<byte> dst, float value) => BinaryPrimitives.WriteUInt16LittleEndian(dst, BitConverter.HalfToUInt16Bits((Half)value));

    // d = max|x| / 127, q = round(x / d) half away from zero.
    public static void Q8_0(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / 32; b++)
        {
            var x = src.Slice(32 * b, 32);
            var y = dst.Slice(34 * b, 34);
            float amax = 0;
            foreach (float v in x) amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax / 127, id = d != 0 ? 1 / d : 0;
            WriteHalf(y, d);
            for (int j = 0; j < 32; j++) y[2 + j] = (byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    // The value of largest magnitude (with its sign) and that magnitude, first one on ties, as ggml scans.
    static float SignedMax(ReadOnlySpan<float> x)
    {
        float amax = 0, max = 0;
        foreach (float v in x)
            if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
        return max;
    }

    static (float Min, float Max) Range(ReadOnlySpan<float> x)
    {
        float min = float.MaxValue, max = -float.MaxValue;
        foreach (float v in x)
        {
            if (v < min) min = v;
            if (v > max) max = v;
        }
        return (min, max);
    }

    // d = max / −8 (the signed extreme maps to −8), q = min(15, trunc(x/d + 8.5)); element j low nibble, j+16 high.
    public static void Q4_0(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / 32; b++)
        {
            var x = src.Slice(32 * b, 32);
            var y = dst.Slice(18 * b, 18);
            float d = SignedMax(x) / -8, id = d != 0 ? 1 / d : 0;
            WriteHalf(y, d);
            for (int j = 0; j < 16; j++)
            {
                int q0 = Math.Min(15, (int)(sbyte)(x[j] * id + 8.5f));
                int q1 = Math.Min(15, (int)(sbyte)(x[j + 16] * id + 8.5f));
                y[2 + j] = (byte)(q0 | q1 << 4);
            }
        }
    }

    // d = (max − min) / 15, m = min, q = min(15, trunc((x − min)/d + 0.5)).
    public static void Q4_1(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / 32; b++)
        {
            var x = src.Slice(32 * b, 32);
            var y = dst.Slice(20 * b, 20);
            var (min, max) = Range(x);
            float d = (max - min) / 15, id = d != 0 ? 1 / d : 0;
            WriteHalf(y, d);
            WriteHalf(y[2..], min);
            for (int j = 0; j < 16; j++)
            {
                int q0 = Math.Min(15, (int)(sbyte)((x[j] - min) * id + 0.5f));
                int q1 = Math.Min(15, (int)(sbyte)((x[j + 16] - min) * id + 0.5f));
                y[4 + j] = (byte)(q0 | q1 << 4);
            }
        }
    }

    // d = max / −16, q = min(31, trunc(x/d + 16.5)); low four bits as Q4_0, the fifth in qh (bit j, j+16).
    public static void Q5_0(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / 32; b++)
        {
            var x = src.Slice(32 * b, 32);
            var y = dst.Slice(22 * b, 22);
            float d = SignedMax(x) / -16, id = d != 0 ? 1 / d : 0;
            WriteHalf(y, d);
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                int q0 = Math.Min(31, (int)(sbyte)(x[j] * id + 16.5f));
                int q1 = Math.Min(31, (int)(sbyte)(x[j + 16] * id + 16.5f));
                y[6 + j] = (byte)((q0 & 0xF) | (q1 & 0xF) << 4);
                qh |= (uint)(q0 >> 4) << j | (uint)(q1 >> 4) << (j + 16);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(y[2..], qh);
        }
    }

    // d = (max − min) / 31, m = min, q = trunc((x − min)/d + 0.5) (no clamp, as the reference).
    public static void Q5_1(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0; b < src.Length / 32; b++)
        {
            var x = src.Slice(32 * b, 32);
            var y = dst.Slice(24 * b, 24);
            var (min, max) = Range(x);
            float d = (max - min) / 31, id = d != 0 ? 1 / d : 0;
            WriteHalf(y, d);
            WriteHalf(y[2..], min);
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                int q0 = (byte)((x[j] - min) * id + 0.5f);
                int q1 = (byte)((x[j + 16] - min) * id + 0.5f);
                y[8 + j] = (byte)((q0 & 0xF) | (q1 & 0xF) << 4);
                qh |= (uint)((q0 & 0x10) >> 4) << j | (uint)((q1 & 0x10) >> 4) << (j + 16);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(y[4..], qh);
        }
    }
}
