using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SharpTune.Quantization;

/// <summary>
/// The AVX2 path (also what the AVX-512 path runs where it has no kernel of its own): per block, the weights unpacked
/// to unsigned bytes meet the activation bytes in vpmaddubsw (u8·s8 pairs to shorts), then vpmaddwd (pairs of shorts,
/// by one or by the sub-block scale, to ints), converted and scaled in float, as ggml's x86 kernels; offsets and
/// mins are taken through the activation sums instead of subtracted byte by byte.
/// </summary>
static unsafe class Avx2Dots
{
    static readonly Vector256<short> Ones = Vector256.Create((short)1);
    static readonly Vector256<byte> Low4 = Vector256.Create((byte)0x0F);

    // u8·s8 products summed in fours: vpmaddubsw then vpmaddwd by one.
    static Vector256<int> Dot(Vector256<byte> u, Vector256<sbyte> s) => Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Ones);

    static Vector256<int> Dot(Vector256<byte> u, Vector256<sbyte> s, Vector256<short> scale) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), scale);

    // The 32 nibbles of a 16-byte Q4 block in element order: low nibbles are elements 0..15, high ones 16..31.
    static Vector256<byte> Nibbles(byte* q)
    {
        var v = Sse2.LoadVector128(q);
        return Vector256.Create(v & Vector128.Create((byte)0x0F), Sse2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F));
    }

    // 0x10 in byte j where bit j of bits is set (the fifth bit of Q5 blocks).
    static Vector256<byte> FifthBits(uint bits)
    {
        var spread = Avx2.Shuffle(Vector256.Create(bits).AsByte(),
            Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        var set = Avx2.CompareEqual(spread | Vector256.Create(0x7FBFDFEFF7FBFDFEUL).AsByte(), Vector256<byte>.AllBitsSet);
        return set & Vector256.Create((byte)0x10);
    }

    public static float Q8_0(byte* w, Q8Row* a, int columns)
    {
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < columns / 32; b++, w += 34)
        {
            var q = Avx.LoadVector256((sbyte*)(w + 2));
            var y = Avx.LoadVector256(a->Qs + 32 * b);
            var p = Dot(Avx2.Abs(q), Avx2.Sign(y, q)); // |q|·(y with q's sign), as ggml
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p), Vector256.Create(Fp16.ToSingle(w) * a->D[b]), acc);
        }
        return Vector256.Sum(acc);
    }

    // Q4_0 and Q5_0: Σ q·y on unsigned q, minus offset·d·Σy; Q4_1 and Q5_1: plus m·Σy.
    public static float Q4_0(byte* w, Q8Row* a, int columns)
    {
        var acc = Vector256<float>.Zero;
        float offsets = 0;
        for (int b = 0; b < columns / 32; b++, w += 18)
        {
            float d = Fp16.ToSingle(w);
            var p = Dot(Nibbles(w + 2), Avx.LoadVector256(a->Qs + 32 * b));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p), Vector256.Create(d * a->D[b]), acc);
            offsets += d * a->Sum[b];
        }
        return Vector256.Sum(acc) - 8 * offsets;
    }

    public static float Q4_1(byte* w, Q8Row* a, int columns)
    {
        var acc = Vector256<float>.Zero;
        float mins = 0;
        for (int b = 0; b < columns / 32; b++, w += 20)
        {
            var p = Dot(Nibbles(w + 4), Avx.LoadVector256(a->Qs + 32 * b));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p), Vector256.Create(Fp16.ToSingle(w) * a->D[b]), acc);
            mins += Fp16.ToSingle(w + 2) * a->Sum[b];
        }
        return Vector256.Sum(acc) + mins;
    }

    public static float Q5_0(byte* w, Q8Row* a, int columns)
    {
        var acc = Vector256<float>.Zero;
        float offsets = 0;
        for (int b = 0; b < columns / 32; b++, w += 22)
        {
            float d = Fp16.ToSingle(w);
            var q = Nibbles(w + 6) | FifthBits(*(uint*)(w + 2));
            var p = Dot(q, Avx.LoadVector256(a->Qs + 32 * b));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p), Vector256.Create(d * a->D[b]), acc);
            offsets += d * a->Sum[b];
        }
        return Vector256.Sum(acc) - 16 * offsets;
    }

    public static float Q5_1(byte* w, Q8Row* a, int columns)
    {
        var acc = Vector256<float>.Zero;
        float mins = 0;
        for (int b = 0; b < columns / 32; b++, w += 24)
        {
            var q = Nibbles(w + 8) | FifthBits(*(uint*)(w + 4));
            var p = Dot(q, Avx.LoadVector256(a->Qs + 32 * b));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p), Vector256.Create(Fp16.ToSingle(w) * a->D[b]), acc);
            mins += Fp16.ToSingle(w + 2) * a->Sum[b];
        }
        return Vector256.Sum(acc) + mins;
    }

    /// <summary>The eight 6-bit scales and mins of a Q4_K/Q5_K super-block (12 packed bytes at s), one per byte.</summary>
    internal static (ulong Scales, ulong Mins) ScalesMins(byte* s)
    {
        uint u0 = *(uint*)s, u1 = *(uint*)(s + 4), u2 = *(uint*)(s + 8);
        uint scLow = u0 & 0x3F3F3F3F, scHigh = (u2 & 0x0F0F0F0F) | ((u0 >> 6) & 0x03030303) << 4;
        uint mLow = u1 & 0x3F3F3F3F, mHigh = ((u2 >> 4) & 0x0F0F0F0F) | ((u1 >> 6) & 0x03030303) << 4;
        return (scLow | (ulong)scHigh << 32, mLow | (ulong)mHigh << 32);
    }

    // Σ_j min_j·(bsums[2j] + bsums[2j+1]) as eight ints: each min repeated for its two sums of 16.
    static Vector256<int> MinTerms(ulong mins, short* bsums)
    {
        var m = Vector128.CreateScalar(mins).AsByte();
        var repeated = Avx2.ConvertToVector256Int16(Sse2.UnpackLow(m, m));
        return Avx2.MultiplyAddAdjacent(Avx.LoadVector256(bsums), repeated);
    }

    public static float Q4_K(byte* w, Q8Row* a, int columns) => KWithMins(w, a, columns, fifthBit: false);

    public static float Q5_K(byte* w, Q8Row* a, int columns) => KWithMins(w, a, columns, fifthBit: true);

    static float KWithMins(byte* w, Q8Row* a, int columns, bool fifthBit)
    {
        var acc = Vector256<float>.Zero;
        var accMins = Vector256<float>.Zero;
        int size = fifthBit ? 176 : 144;
        for (int b = 0; b < columns / 256; b++, w += size)
        {
            var (scales, mins) = ScalesMins(w + 4);
            sbyte* y = a->Qs + 256 * b;
            byte* qs = w + (fifthBit ? 48 : 16);
            var high = fifthBit ? Avx.LoadVector256(w + 16) : default;
            var sum = Vector256<int>.Zero;
            for (int k = 0; k < 4; k++)
            {
                var q = Avx.LoadVector256(qs + 32 * k);
                var low = q & Low4;
                var up = Avx2.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & Low4;
                if (fifthBit)
                {
                    // Bits 2k and 2k+1 of each qh byte; shifting shorts lets the next byte's bits into bits >= 8 − 2k only.
                    low |= Avx2.ShiftLeftLogical((high & Vector256.Create((byte)1)).AsUInt16(), 4).AsByte();
                    up |= Avx2.ShiftLeftLogical((high & Vector256.Create((byte)2)).AsUInt16(), 3).AsByte();
                    high = Avx2.ShiftRightLogical(high.AsUInt16(), 2).AsByte();
                }
                sum += Dot(low, Avx.LoadVector256(y + 64 * k), Vector256.Create((short)(byte)(scales >> (16 * k))));
                sum += Dot(up, Avx.LoadVector256(y + 64 * k + 32), Vector256.Create((short)(byte)(scales >> (16 * k + 8))));
            }
            float dy = a->D[b];
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Create(dy * Fp16.ToSingle(w)), acc);
            accMins = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MinTerms(mins, a->BSums + 16 * b)), Vector256.Create(dy * Fp16.ToSingle(w + 2)), accMins);
        }
        return Vector256.Sum(acc) - Vector256.Sum(accMins);
    }

    static Vector256<short> PairScale(sbyte* sc) => Vector256.Create(Vector128.Create((short)sc[0]), Vector128.Create((short)sc[1]));

    public static float Q6_K(byte* w, Q8Row* a, int columns)
    {
        var acc = Vector256<float>.Zero;
        var mask = Vector256.Create((byte)0x30);
        for (int b = 0; b < columns / 256; b++, w += 210)
        {
            sbyte* sc = (sbyte*)(w + 192), y = a->Qs + 256 * b;
            // The −32 of every value, through the sums of 16: Σ_k scale_k·bsums_k·32.
            var scales = Avx2.ConvertToVector256Int16(Sse2.LoadVector128(sc));
            var sum = -Avx2.ShiftLeftLogical(Avx2.MultiplyAddAdjacent(Avx.LoadVector256(a->BSums + 16 * b), scales), 5);
            for (int half = 0; half < 2; half++)
            {
                var l0 = Avx.LoadVector256(w + 64 * half);
                var l1 = Avx.LoadVector256(w + 64 * half + 32);
                var h = Avx.LoadVector256(w + 128 + 32 * half).AsUInt16();
                var q1 = (l0 & Low4) | (Avx2.ShiftLeftLogical(h, 4).AsByte() & mask);
                var q2 = (l1 & Low4) | (Avx2.ShiftLeftLogical(h, 2).AsByte() & mask);
                var q3 = (Avx2.ShiftRightLogical(l0.AsUInt16(), 4).AsByte() & Low4) | (h.AsByte() & mask);
                var q4 = (Avx2.ShiftRightLogical(l1.AsUInt16(), 4).AsByte() & Low4) | (Avx2.ShiftRightLogical(h, 2).AsByte() & mask);
                sbyte* yh = y + 128 * half, s = sc + 8 * half;
                sum += Dot(q1, Avx.LoadVector256(yh), PairScale(s));
                sum += Dot(q2, Avx.LoadVector256(yh + 32), PairScale(s + 2));
                sum += Dot(q3, Avx.LoadVector256(yh + 64), PairScale(s + 4));
                sum += Dot(q4, Avx.LoadVector256(yh + 96), PairScale(s + 6));
            }
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Create(a->D[b] * Fp16.ToSingle(w + 208)), acc);
        }
        return Vector256.Sum(acc);
    }
}
