using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace SharpTune.Checkpoints.Gguf;

/// <summary>
/// Block decoders for the ggml types we load, following the block structs of ggml-common.h and the
/// dequantize_row_* functions of ggml-quants.c. Each decodes whole blocks: src holds n blocks, dst n × block size floats.
/// </summary>
static class GgufDequantize
{
    public static void Blocks(GgufTensorType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case GgufTensorType.F32: MemoryMarshal.Cast<byte, float>(src).CopyTo(dst); break;
            case GgufTensorType.F16:
                var halves = MemoryMarshal.Cast<byte, Half>(src);
                for (int i = 0; i < halves.Length; i++) dst[i] = (float)halves[i];
                break;
            case GgufTensorType.BF16:
                var raw = MemoryMarshal.Cast<byte, ushort>(src);
                for (int i = 0; i < raw.Length; i++) dst[i] = BitConverter.Int32BitsToSingle(raw[i] << 16); // bf16 is the top half of an f32
                break;
            case GgufTensorType.Q8_0: Q8_0(src, dst); break;
            case GgufTensorType.Q4_0: Q4_0(src, dst); break;
            case GgufTensorType.Q4_1: Q4_1(src, dst); break;
            case GgufTensorType.Q5_0: Q5(src, dst, withMin: false); break;
            case GgufTensorType.Q5_1: Q5(src, dst, withMin: true); break;
            case GgufTensorType.Q4_K: Q4_K(src, dst); break;
            case GgufTensorType.Q5_K: Q5_K(src, dst); break;
            case GgufTensorType.Q6_K: Q6_K(src, dst); break;
            default: throw new NotSupportedException($"{type} is not supported; supported: {GgufTensorTypes.SupportedList}");
        }
    }

    static float Half(ReadOnlySpan<byte> b, int at) => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(b[at..]));

    // block_q8_0 (34 bytes): f16 d, i8 qs[32]; x = q·d.
    static void Q8_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0, o = 0; b < src.Length; b += 34, o += 32)
        {
            float d = Half(src, b);
            for (int j = 0; j < 32; j++) dst[o + j] = (sbyte)src[b + 2 + j] * d;
        }
    }

    // block_q4_0 (18 bytes): f16 d, qs[16]; byte j holds element j (low nibble) and j+16 (high); x = (q−8)·d.
    static void Q4_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0, o = 0; b < src.Length; b += 18, o += 32)
        {
            float d = Half(src, b);
            for (int j = 0; j < 16; j++)
            {
                byte q = src[b + 2 + j];
                dst[o + j] = ((q & 0xF) - 8) * d;
                dst[o + j + 16] = ((q >> 4) - 8) * d;
            }
        }
    }

    // 6-bit scale and min of sub-block j from the 12 packed bytes of a Q4_K/Q5_K super-block:
    // sub-blocks 0-3 use the low 6 bits of bytes j and j+4; 4-7 combine a nibble of byte j+4 with the
    // top two bits of bytes j−4 (scale) and j (min).
    static (int Scale, int Min) ScaleMin(ReadOnlySpan<byte> s, int j) => j < 4
        ? (s[j] & 63, s[j + 4] & 63)
        : ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4));

    // block_q4_K (144 bytes): f16 d, f16 dmin, scales[12], qs[128]. Eight sub-blocks of 32; each 64
    // outputs take 32 bytes of qs, low nibbles first; x = d·scale·q − dmin·min.
    // block_q4_1 (20 bytes): f16 d, f16 m, qs[16]; nibbles as Q4_0; x = q·d + m.
    static void Q4_1(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0, o = 0; b < src.Length; b += 20, o += 32)
        {
            float d = Half(src, b), m = Half(src, b + 2);
            for (int j = 0; j < 16; j++)
            {
                byte q = src[b + 4 + j];
                dst[o + j] = (q & 0xF) * d + m;
                dst[o + j + 16] = (q >> 4) * d + m;
            }
        }
    }

    // block_q5_0 (22 bytes): f16 d, u32 qh, qs[16]; block_q5_1 (24 bytes): f16 d, f16 m, u32 qh, qs[16].
    // Element j takes its low four bits from nibble j of qs (as Q4_0) and its fifth from bit j of qh (elements 16..31:
    // bits 16..31). Q5_0: x = (q − 16)·d; Q5_1: x = q·d + m. These are what llama.cpp's K-quant files use for tensors whose
    // rows are not a multiple of 256 (Qwen2.5-0.5B's 896).
    static void Q5(ReadOnlySpan<byte> src, Span<float> dst, bool withMin)
    {
        int header = withMin ? 4 : 2, size = header + 4 + 16;
        for (int b = 0, o = 0; b < src.Length; b += size, o += 32)
        {
            float d = Half(src, b), m = withMin ? Half(src, b + 2) : 0;
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(src[(b + header)..]);
            int offset = withMin ? 0 : 16;
            for (int j = 0; j < 16; j++)
            {
                byte q = src[b + header + 4 + j];
                int low = (q & 0xF) | (int)((qh >> j) & 1) << 4;
                int high = (q >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
                dst[o + j] = (low - offset) * d + m;
                dst[o + j + 16] = (high - offset) * d + m;
            }
        }
    }

    static void Q4_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0, o = 0; b < src.Length; b += 144, o += 256)
        {
            var block = src.Slice(b, 144);
            float d = Half(block, 0), dmin = Half(block, 2);
            var scales = block.Slice(4, 12);
            var qs = block[16..];
            for (int k = 0; k < 4; k++)
            {
                var (s1, m1) = ScaleMin(scales, 2 * k);
                var (s2, m2) = ScaleMin(scales, 2 * k + 1);
                float d1 = d * s1, min1 = dmin * m1, d2 = d * s2, min2 = dmin * m2;
                var q = qs.Slice(32 * k, 32);
                var y = dst.Slice(o + 64 * k, 64);
                for (int l = 0; l < 32; l++)
                {
                    y[l] = d1 * (q[l] & 0xF) - min1;
                    y[l + 32] = d2 * (q[l] >> 4) - min2;
                }
            }
        }
    }

    // block_q5_K (176 bytes): f16 d, f16 dmin, scales[12], qh[32], qs[128]; as Q4_K with a fifth bit
    // from qh: bit 2k of qh[l] for the low nibbles of group k, bit 2k+1 for the high ones.
    static void Q5_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0, o = 0; b < src.Length; b += 176, o += 256)
        {
            var block = src.Slice(b, 176);
            float d = Half(block, 0), dmin = Half(block, 2);
            var scales = block.Slice(4, 12);
            var qh = block.Slice(16, 32);
            var qs = block[48..];
            for (int k = 0; k < 4; k++)
            {
                var (s1, m1) = ScaleMin(scales, 2 * k);
                var (s2, m2) = ScaleMin(scales, 2 * k + 1);
                float d1 = d * s1, min1 = dmin * m1, d2 = d * s2, min2 = dmin * m2;
                int u1 = 1 << (2 * k), u2 = 2 << (2 * k);
                var q = qs.Slice(32 * k, 32);
                var y = dst.Slice(o + 64 * k, 64);
                for (int l = 0; l < 32; l++)
                {
                    y[l] = d1 * ((q[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - min1;
                    y[l + 32] = d2 * ((q[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - min2;
                }
            }
        }
    }

    // block_q6_K (210 bytes): ql[128] (low 4 bits), qh[64] (high 2 bits), i8 scales[16], f16 d.
    // Two halves of 128 outputs; in each, position l (< 32) feeds outputs l, l+32, l+64, l+96;
    // x = d·scale·(q − 32) with one scale per 16 outputs.
    static void Q6_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0, o = 0; b < src.Length; b += 210, o += 256)
        {
            var block = src.Slice(b, 210);
            float d = Half(block, 208);
            for (int half = 0; half < 2; half++)
            {
                var ql = block.Slice(64 * half, 64);
                var qh = block.Slice(128 + 32 * half, 32);
                var sc = MemoryMarshal.Cast<byte, sbyte>(block.Slice(192 + 8 * half, 8));
                var y = dst.Slice(o + 128 * half, 128);
                for (int l = 0; l < 32; l++)
                {
                    int s = l / 16;
                    int q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l] = d * sc[s] * q1;
                    y[l + 32] = d * sc[s + 2] * q2;
                    y[l + 64] = d * sc[s + 4] * q3;
                    y[l + 96] = d * sc[s + 6] * q4;
                }
            }
        }
    }
}
