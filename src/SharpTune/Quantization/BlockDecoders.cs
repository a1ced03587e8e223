using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SharpTune.Checkpoints.Gguf;

namespace SharpTune.Quantization;

/// <summary>
/// One row of blocks to fp32, bit for bit as ggml's dequantize_row_* (and <see cref="GgufDequantize"/>, which stays the
/// reference and the portable path): the same float operations in the same order (a multiply, then an add or a
/// subtract; never fused), eight values at a time with AVX2.
/// </summary>
static unsafe class BlockDecoders
{
    public static void Row(GgufTensorType type, ReadOnlySpan<byte> blocks, float* dst, int columns)
    {
        if (!Avx2.IsSupported || QuantizedKernels.Path == KernelPath.Portable)
        {
            GgufDequantize.Blocks(type, blocks, new Span<float>(dst, columns));
            return;
        }
        fixed (byte* w = blocks)
        {
            switch (type)
            {
                case GgufTensorType.F32: Buffer.MemoryCopy(w, dst, 4L * columns, 4L * columns); break;
                case GgufTensorType.F16: Halves(w, dst, columns); break;
                case GgufTensorType.BF16: Bf16s(w, dst, columns); break;
                case GgufTensorType.Q8_0: Q8_0(w, dst, columns); break;
                case GgufTensorType.Q4_0: Q4(w, dst, columns, withMin: false); break;
                case GgufTensorType.Q4_1: Q4(w, dst, columns, withMin: true); break;
                case GgufTensorType.Q5_0: Q5(w, dst, columns, withMin: false); break;
                case GgufTensorType.Q5_1: Q5(w, dst, columns, withMin: true); break;
                case GgufTensorType.Q4_K: KWithMins(w, dst, columns, fifthBit: false); break;
                case GgufTensorType.Q5_K: KWithMins(w, dst, columns, fifthBit: true); break;
                case GgufTensorType.Q6_K: Q6_K(w, dst, columns); break;
                default: GgufDequantize.Blocks(type, blocks, new Span<float>(dst, columns)); break;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Halves(byte* w, float* dst, int columns)
    {
        int c = 0;
        for (; c + 8 <= columns; c += 8) Avx.Store(dst + c, FloatDots.HalfToSingle(Avx2.ConvertToVector256Int32((ushort*)w + c)));
        for (; c < columns; c++) dst[c] = Fp16.Table[((ushort*)w)[c]];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Bf16s(byte* w, float* dst, int columns)
    {
        int c = 0;
        for (; c + 8 <= columns; c += 8) Avx.Store(dst + c, Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((ushort*)w + c), 16).AsSingle());
        for (; c < columns; c++) dst[c] = BitConverter.Int32BitsToSingle(((ushort*)w)[c] << 16);
    }

    // Bytes 8·part .. 8·part+7 of v, zero-extended to ints.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Widen(Vector128<byte> v, int part) => Avx2.ConvertToVector256Int32(part == 0 ? v : Sse2.ShiftRightLogical128BitLane(v, 8));

    // (q − offset)·scale + add, for 16 unsigned values (ints before the float conversion, as the scalar decoder).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store16(Vector128<byte> q, int offset, Vector256<float> scale, Vector256<float> add, float* dst, bool withAdd)
    {
        var o = Vector256.Create(offset);
        var a = Avx.ConvertToVector256Single(Widen(q, 0) - o) * scale;
        var b = Avx.ConvertToVector256Single(Widen(q, 1) - o) * scale;
        Avx.Store(dst, withAdd ? a + add : a);
        Avx.Store(dst + 8, withAdd ? b + add : b);
    }

    // scale·q − sub for 16 unsigned values (the K-quants: d·scale·q − dmin·min).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store16Sub(Vector128<byte> q, Vector256<float> scale, Vector256<float> sub, float* dst)
    {
        Avx.Store(dst, scale * Avx.ConvertToVector256Single(Widen(q, 0)) - sub);
        Avx.Store(dst + 8, scale * Avx.ConvertToVector256Single(Widen(q, 1)) - sub);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Q8_0(byte* w, float* dst, int columns)
    {
        float* halves = Fp16.Table; // read once: see Fp16.ToSingle(float*, byte*)
        for (int b = 0; b < columns / 32; b++, w += 34, dst += 32)
        {
            var d = Vector256.Create(Fp16.ToSingle(halves, w));
            for (int j = 0; j < 32; j += 8)
                Avx.Store(dst + j, Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32((sbyte*)(w + 2 + j))) * d);
        }
    }

    // Q4_0: (q − 8)·d; Q4_1: q·d + m. Low nibbles are elements 0..15, high ones 16..31.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Q4(byte* w, float* dst, int columns, bool withMin)
    {
        float* halves = Fp16.Table; // read once: see Fp16.ToSingle(float*, byte*)
        int size = withMin ? 20 : 18, header = withMin ? 4 : 2, offset = withMin ? 0 : 8;
        var low4 = Vector128.Create((byte)0x0F);
        for (int b = 0; b < columns / 32; b++, w += size, dst += 32)
        {
            var d = Vector256.Create(Fp16.ToSingle(halves, w));
            var m = withMin ? Vector256.Create(Fp16.ToSingle(halves, w + 2)) : default;
            var q = Sse2.LoadVector128(w + header);
            Store16(q & low4, offset, d, m, dst, withMin);
            Store16(Sse2.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & low4, offset, d, m, dst + 16, withMin);
        }
    }

    // Q5_0: (q − 16)·d + 0 (the reference adds its zero min too, which turns −0 into +0); Q5_1: q·d + m.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Q5(byte* w, float* dst, int columns, bool withMin)
    {
        float* halves = Fp16.Table; // read once: see Fp16.ToSingle(float*, byte*)
        int size = withMin ? 24 : 22, header = withMin ? 4 : 2, offset = withMin ? 0 : 16;
        var low4 = Vector128.Create((byte)0x0F);
        for (int b = 0; b < columns / 32; b++, w += size, dst += 32)
        {
            var d = Vector256.Create(Fp16.ToSingle(halves, w));
            var m = withMin ? Vector256.Create(Fp16.ToSingle(halves, w + 2)) : Vector256<float>.Zero;
            var fifth = Avx2Dots.FifthBits(*(uint*)(w + header));
            var q = Sse2.LoadVector128(w + header + 4);
            Store16((q & low4) | fifth.GetLower(), offset, d, m, dst, withAdd: true);
            Store16((Sse2.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & low4) | fifth.GetUpper(), offset, d, m, dst + 16, withAdd: true);
        }
    }

    // Q4_K/Q5_K: for each 64 outputs, d·scale·q − dmin·min with the low nibbles (sub-block 2k), then the high ones.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void KWithMins(byte* w, float* dst, int columns, bool fifthBit)
    {
        float* halves = Fp16.Table; // read once: see Fp16.ToSingle(float*, byte*)
        int size = fifthBit ? 176 : 144;
        for (int b = 0; b < columns / 256; b++, w += size, dst += 256)
        {
            float d = Fp16.ToSingle(halves, w), dmin = Fp16.ToSingle(halves, w + 2);
            var (scales, mins) = Avx2Dots.ScalesMins(w + 4);
            byte* qs = w + (fifthBit ? 48 : 16);
            var high = fifthBit ? Avx.LoadVector256(w + 16) : default;
            for (int k = 0; k < 4; k++)
            {
                var (lo, up) = Avx2Dots.KQuarter(qs, k, ref high, fifthBit);
                var d1 = Vector256.Create(d * (byte)(scales >> (16 * k)));
                var m1 = Vector256.Create(dmin * (byte)(mins >> (16 * k)));
                var d2 = Vector256.Create(d * (byte)(scales >> (16 * k + 8)));
                var m2 = Vector256.Create(dmin * (byte)(mins >> (16 * k + 8)));
                float* y = dst + 64 * k;
                Store16Sub(lo.GetLower(), d1, m1, y);
                Store16Sub(lo.GetUpper(), d1, m1, y + 16);
                Store16Sub(up.GetLower(), d2, m2, y + 32);
                Store16Sub(up.GetUpper(), d2, m2, y + 48);
            }
        }
    }

    // Q6_K: (d·scale)·(q − 32), one scale per 16 outputs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Q6_K(byte* w, float* dst, int columns)
    {
        float* halves = Fp16.Table; // read once: see Fp16.ToSingle(float*, byte*)
        var zero = Vector256<float>.Zero;
        for (int b = 0; b < columns / 256; b++, w += 210, dst += 256)
        {
            float d = Fp16.ToSingle(halves, w + 208);
            sbyte* sc = (sbyte*)(w + 192);
            for (int half = 0; half < 2; half++)
            {
                var (q1, q2, q3, q4) = Avx2Dots.Q6Half(w, half);
                float* y = dst + 128 * half;
                sbyte* s = sc + 8 * half;
                Store32(q1, d * s[0], d * s[1], y, zero);
                Store32(q2, d * s[2], d * s[3], y + 32, zero);
                Store32(q3, d * s[4], d * s[5], y + 64, zero);
                Store32(q4, d * s[6], d * s[7], y + 96, zero);
            }
        }
    }

    // 32 values q − 32 times ds0 (first 16) and ds1 (last 16).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store32(Vector256<byte> q, float ds0, float ds1, float* dst, Vector256<float> zero)
    {
        Store16(q.GetLower(), 32, Vector256.Create(ds0), zero, dst, withAdd: false);
        Store16(q.GetUpper(), 32, Vector256.Create(ds1), zero, dst + 16, withAdd: false);
    }
}
