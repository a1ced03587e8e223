using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SharpTune.Quantization;

/// <summary>
/// The AVX-512 kernels of the nibble block types (Q4_0, Q4_1, Q5_0, Q5_1), four blocks per 512-bit vector: one vpermt2b
/// (VBMI) gathers the four blocks' 64 nibble bytes out of two loads, so low nibbles (elements 0..15 of each block) and
/// high ones (16..31) each fill a register. The activation row is laid out to match (<see cref="ActivationQuantizer"/>,
/// split halves): per group of four blocks, the first halves of the four, then the second halves. After vpmaddubsw
/// and vpmaddwd each 128-bit lane holds one block's four partial sums, scaled in float by that block's scale.
/// </summary>
static unsafe class Avx512Dots
{
    public static bool IsSupported => Avx512BW.IsSupported && Avx512Vbmi.IsSupported && Avx2.IsSupported && Fma.IsSupported;

    public static float Q4_0(byte* w, Q8Row* a, int columns) => Nibbles<Q4_0Layout>(w, a, columns);

    public static float Q4_1(byte* w, Q8Row* a, int columns) => Nibbles<Q4_1Layout>(w, a, columns);

    public static float Q5_0(byte* w, Q8Row* a, int columns) => Nibbles<Q5_0Layout>(w, a, columns);

    public static float Q5_1(byte* w, Q8Row* a, int columns) => Nibbles<Q5_1Layout>(w, a, columns);

    /// <summary>
    /// vpermt2b indices picking, for four blocks at w, byte <c>pick(k, j)</c> of block k into byte 16k + j. The two
    /// tables are the 64 bytes at w and the 64 ending at the fourth block's end (w + 4·size − 64), so nothing past the
    /// four blocks is read.
    /// </summary>
    static Vector512<byte> Indices(int size, Func<int, int, int> pick)
    {
        var indices = new byte[64];
        int secondStart = 4 * size - 64;
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 16; j++)
            {
                int at = size * k + pick(k, j);
                indices[16 * k + j] = (byte)(at < 64 ? at : 64 + at - secondStart);
            }
        return Vector512.Create((ReadOnlySpan<byte>)indices);
    }

    // The permutations of a layout, built once.
    static class Tables<T> where T : struct, INibbleLayout
    {
        public static readonly Vector512<byte> Qs = Indices(T.Bytes, (k, j) => T.Qs + j);
        // For the fifth bits: byte j of lane k is qh byte j/8 (elements 0..15), or 2 + j/8 (elements 16..31).
        public static readonly Vector512<byte> QhLow = T.Qh >= 0 ? Indices(T.Bytes, (k, j) => T.Qh + j / 8) : default;
        public static readonly Vector512<byte> QhHigh = T.Qh >= 0 ? Indices(T.Bytes, (k, j) => T.Qh + 2 + j / 8) : default;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Nibbles<T>(byte* w, Q8Row* a, int columns) where T : struct, INibbleLayout
    {
        int blocks = columns / 32, b = 0, second = 4 * T.Bytes - 64;
        var qsIndex = Tables<T>.Qs;
        var qhLowIndex = Tables<T>.QhLow;
        var qhHighIndex = Tables<T>.QhHigh;
        var bitMask = Vector512.Create(0x7FBFDFEFF7FBFDFEUL).AsByte();
        var low4 = Vector512.Create((byte)0x0F);
        var fifth = Vector512.Create((byte)0x10);
        var ones = Vector512.Create((short)1);
        var firstHalf = Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        var secondHalf = firstHalf + Vector512.Create(4);
        var headers = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * T.Bytes;
        sbyte* y = a->Qs;
        float* dy = a->D, sums = a->Sum;
        var acc = Vector512<float>.Zero;
        var carried = Vector256<float>.Zero;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        Vector512<float> Four(byte* w4, sbyte* y4)
        {
            var t0 = Avx512F.LoadVector512(w4);
            var t1 = Avx512F.LoadVector512(w4 + second);
            var q = Avx512Vbmi.PermuteVar64x8x2(t0, qsIndex, t1);
            var lo = q & low4;
            var hi = Avx512BW.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & low4;
            if (T.Qh >= 0)
            {
                var bitsLo = Avx512Vbmi.PermuteVar64x8x2(t0, qhLowIndex, t1) | bitMask;
                var bitsHi = Avx512Vbmi.PermuteVar64x8x2(t0, qhHighIndex, t1) | bitMask;
                lo |= Vector512.Equals(bitsLo, Vector512<byte>.AllBitsSet) & fifth;
                hi |= Vector512.Equals(bitsHi, Vector512<byte>.AllBitsSet) & fifth;
            }
            var pairs = Avx512BW.MultiplyAddAdjacent(lo, Avx512F.LoadVector512(y4)) + Avx512BW.MultiplyAddAdjacent(hi, Avx512F.LoadVector512(y4 + 64));
            return Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(pairs, ones));
        }

        for (; b + 8 <= blocks; b += 8, w += 8 * T.Bytes)
        {
            var header = Avx2.GatherVector256((int*)w, headers, 1);
            var d = FloatDots.HalfToSingle(header & Vector256.Create(0xFFFF));
            var scales = Vector512.Create(d * Avx.LoadVector256(dy + b), default);
            acc = Avx512F.FusedMultiplyAdd(Four(w, y + 32 * b), Avx512F.PermuteVar16x32(scales, firstHalf), acc);
            acc = Avx512F.FusedMultiplyAdd(Four(w + 4 * T.Bytes, y + 32 * b + 128), Avx512F.PermuteVar16x32(scales, secondHalf), acc);
            var carry = T.HasMin ? FloatDots.HalfToSingle(Avx2.ShiftRightLogical(header, 16)) : d;
            carried = Fma.MultiplyAdd(carry, Avx.LoadVector256(sums + b), carried);
        }
        float tailCarried = 0;
        if (b + 4 <= blocks)
        {
            var s = stackalloc float[4];
            for (int k = 0; k < 4; k++)
            {
                float d = Fp16.ToSingle(w + k * T.Bytes);
                s[k] = d * dy[b + k];
                tailCarried += (T.HasMin ? Fp16.ToSingle(w + k * T.Bytes + 2) : d) * sums[b + k];
            }
            var scales = Vector512.Create(Vector256.Create(Vector128.Create(s[0]), Vector128.Create(s[1])), Vector256.Create(Vector128.Create(s[2]), Vector128.Create(s[3])));
            acc = Avx512F.FusedMultiplyAdd(Four(w, y + 32 * b), scales, acc);
            b += 4;
            w += 4 * T.Bytes;
        }
        float total = Vector512.Sum(acc);
        NibbleBlocks.Tail<T>(w, a, b, blocks, ref total, ref tailCarried); // the last blocks, fewer than four, keep the natural layout
        float carriedTotal = Vector256.Sum(carried) + tailCarried;
        return T.HasMin ? total + carriedTotal : total - T.Offset * carriedTotal;
    }
}
