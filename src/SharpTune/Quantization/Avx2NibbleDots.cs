using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SharpTune.Quantization;

/// <summary>
/// The 256-bit kernels of the four-bit block types (Q4_0, Q4_1), two blocks per vector: the two blocks'
/// 16 bytes of nibbles are loaded into the two halves of one register, so one mask gives both blocks' low nibbles
/// (elements 0..15) and one shift their high ones (16..31), against the activation in split halves
/// (<see cref="ActivationQuantizer"/>: per group of four blocks, the four first halves, then the four second halves).
/// After vpmaddubsw on both and vpmaddwd (or AVX-VNNI's vpdpbusd) the low 128 bits hold the first block's four partial
/// sums and the high 128 the second's, converted and scaled in float by a vector holding each block's scale four times:
/// no horizontal additions: half the unpacking of one block a vector, and no reduction (1.2x the one-block kernel's
/// rate on Zen 4, docs/results.md). The five-bit types keep the one-block kernels (<see cref="Avx2Dots"/>): their
/// fifth bits cost the pair form what it saves (measured equal).
/// </summary>
static unsafe class Avx2NibbleDots
{
    public static float Q4_0(byte* w, Q8Row* a, int columns) => Pairs<Q4_0Layout>(w, a, columns);

    public static float Q4_1(byte* w, Q8Row* a, int columns) => Pairs<Q4_1Layout>(w, a, columns);

    public static void Q4_0Rows(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => PairsRows<Q4_0Layout>(w, a, n, columns, y, stride);

    public static void Q4_1Rows(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => PairsRows<Q4_1Layout>(w, a, n, columns, y, stride);

    /// <summary>The blocks at w and w + Bytes: their low nibbles in one register, their high ones in another.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector256<byte> Low, Vector256<byte> High) Unpack<T>(byte* w) where T : struct, INibbleLayout
    {
        Debug.Assert(T.Qh < 0, "the pair kernels take the four-bit types only");
        var q = Vector256.Create(Sse2.LoadVector128(w + T.Qs), Sse2.LoadVector128(w + T.Bytes + T.Qs));
        var low = q & Avx2Dots.Low4;
        var high = Avx2.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & Avx2Dots.Low4;
        return (low, high);
    }

    /// <summary>
    /// A pair's integer sums as floats: lanes 0..3 the first block's, 4..7 the second's. The two vpmaddubsw results are
    /// added as shorts before widening: each is at most 2·15·127 in magnitude, so neither they nor their sum saturate,
    /// and the ints equal vpdpbusd's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Sums(Vector256<byte> low, Vector256<byte> high, sbyte* yLow, sbyte* yHigh)
    {
        var ints = AvxVnni.IsSupported
            ? AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, low, Avx.LoadVector256(yLow)), high, Avx.LoadVector256(yHigh))
            : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Avx.LoadVector256(yLow)) + Avx2.MultiplyAddAdjacent(high, Avx.LoadVector256(yHigh)),
                Vector256.Create((short)1));
        return Avx.ConvertToVector256Single(ints);
    }

    // Which lane of a vector of eight block scales each pair's lanes take.
    static Vector256<int> Pair01 => Vector256.Create(0, 0, 0, 0, 1, 1, 1, 1);
    static Vector256<int> Pair23 => Vector256.Create(2, 2, 2, 2, 3, 3, 3, 3);
    static Vector256<int> Pair45 => Vector256.Create(4, 4, 4, 4, 5, 5, 5, 5);
    static Vector256<int> Pair67 => Vector256.Create(6, 6, 6, 6, 7, 7, 7, 7);

    /// <summary>
    /// Σ over blocks of d_w·D·Σq·y, plus m·Sum (or − Offset·d_w·Sum): eight blocks a step (their fp16 headers gathered
    /// and widened together), then a last group of four, then the last blocks, fewer than four, in plain C#.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Pairs<T>(byte* w, Q8Row* a, int columns) where T : struct, INibbleLayout
    {
        int blocks = columns / 32, b = 0;
        var headers = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * T.Bytes;
        sbyte* y = a->Qs;
        float* dy = a->D, sums = a->Sum;
        var acc = Vector256<float>.Zero;
        var carried = Vector256<float>.Zero;
        for (; b + 8 <= blocks; b += 8, w += 8 * T.Bytes)
        {
            WeightStream.Prefetch(w, 8 * T.Bytes);
            var header = Avx2.GatherVector256((int*)w, headers, 1); // d in the low half, m (when there is one) in the high
            var d = FloatDots.HalfToSingle(header & Vector256.Create(0xFFFF));
            var scales = d * Avx.LoadVector256(dy + b);
            sbyte* y8 = y + 32 * b;
            var (l0, h0) = Unpack<T>(w);
            var (l1, h1) = Unpack<T>(w + 2 * T.Bytes);
            var (l2, h2) = Unpack<T>(w + 4 * T.Bytes);
            var (l3, h3) = Unpack<T>(w + 6 * T.Bytes);
            acc = EightBlocks(acc, y8, scales, l0, h0, l1, h1, l2, h2, l3, h3);
            var carry = T.HasMin ? FloatDots.HalfToSingle(Avx2.ShiftRightLogical(header, 16)) : d;
            carried = Fma.MultiplyAdd(carry, Avx.LoadVector256(sums + b), carried);
        }
        float tailCarried = 0;
        if (b + 4 <= blocks)
        {
            var scales = FourScales<T>(w, dy + b, sums + b, ref tailCarried);
            var (l0, h0) = Unpack<T>(w);
            var (l1, h1) = Unpack<T>(w + 2 * T.Bytes);
            acc = FourBlocks(acc, y + 32 * b, scales, l0, h0, l1, h1);
            b += 4;
            w += 4 * T.Bytes;
        }
        return Finish<T>(w, a, b, blocks, acc, carried, tailCarried);
    }

    /// <summary>A last group of four blocks: their scales d·D in lanes 0..3; their carried terms added in block order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> FourScales<T>(byte* w, float* dy, float* sums, ref float carried) where T : struct, INibbleLayout
    {
        float d0 = Fp16.ToSingle(w), d1 = Fp16.ToSingle(w + T.Bytes), d2 = Fp16.ToSingle(w + 2 * T.Bytes), d3 = Fp16.ToSingle(w + 3 * T.Bytes);
        carried += (T.HasMin ? Fp16.ToSingle(w + 2) : d0) * sums[0];
        carried += (T.HasMin ? Fp16.ToSingle(w + T.Bytes + 2) : d1) * sums[1];
        carried += (T.HasMin ? Fp16.ToSingle(w + 2 * T.Bytes + 2) : d2) * sums[2];
        carried += (T.HasMin ? Fp16.ToSingle(w + 3 * T.Bytes + 2) : d3) * sums[3];
        return Vector256.Create(d0 * dy[0], d1 * dy[1], d2 * dy[2], d3 * dy[3], 0, 0, 0, 0);
    }

    /// <summary>Eight blocks (four pairs, unpacked) against a row's activation at p (split halves), scales in block order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> EightBlocks(Vector256<float> acc, sbyte* p, Vector256<float> scales, Vector256<byte> l0, Vector256<byte> h0,
        Vector256<byte> l1, Vector256<byte> h1, Vector256<byte> l2, Vector256<byte> h2, Vector256<byte> l3, Vector256<byte> h3)
    {
        acc = Fma.MultiplyAdd(Sums(l0, h0, p, p + 64), Avx2.PermuteVar8x32(scales, Pair01), acc);
        acc = Fma.MultiplyAdd(Sums(l1, h1, p + 32, p + 96), Avx2.PermuteVar8x32(scales, Pair23), acc);
        acc = Fma.MultiplyAdd(Sums(l2, h2, p + 128, p + 192), Avx2.PermuteVar8x32(scales, Pair45), acc);
        return Fma.MultiplyAdd(Sums(l3, h3, p + 160, p + 224), Avx2.PermuteVar8x32(scales, Pair67), acc);
    }

    /// <summary>A last group of four blocks (two pairs, unpacked), as <see cref="EightBlocks"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> FourBlocks(Vector256<float> acc, sbyte* p, Vector256<float> scales, Vector256<byte> l0, Vector256<byte> h0,
        Vector256<byte> l1, Vector256<byte> h1)
    {
        acc = Fma.MultiplyAdd(Sums(l0, h0, p, p + 64), Avx2.PermuteVar8x32(scales, Pair01), acc);
        return Fma.MultiplyAdd(Sums(l1, h1, p + 32, p + 96), Avx2.PermuteVar8x32(scales, Pair23), acc);
    }

    /// <summary>
    /// <see cref="Pairs{T}"/> for n activation rows, four at a time where AVX-512's 32 registers hold them (with sixteen
    /// the four rows' sums spill), then two, then one: each pair of blocks unpacked once for the group, each row's sums
    /// in <see cref="Pairs{T}"/>'s order, so every row equals its one-row product bit for bit.
    /// </summary>
    static void PairsRows<T>(byte* w, Q8Row* a, int n, int columns, float* y, long stride) where T : struct, INibbleLayout
    {
        int i = 0;
        if (Avx512F.VL.IsSupported)
            for (; i + 4 <= n; i += 4) Group<T, FourRows>(w, a + i, columns, y + i * stride, stride);
        for (; i + 2 <= n; i += 2) Group<T, TwoRows>(w, a + i, columns, y + i * stride, stride);
        for (; i < n; i++) y[i * stride] = Pairs<T>(w, a + i, columns);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Group<T, TRows>(byte* w, Q8Row* a, int columns, float* y, long stride) where T : struct, INibbleLayout where TRows : struct, IRowCount
    {
        bool four = TRows.Count == 4;
        int blocks = columns / 32, b = 0;
        var headers = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * T.Bytes;
        Q8Row* r0 = a, r1 = a + 1, r2 = a + (four ? 2 : 0), r3 = a + (four ? 3 : 0);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector256<float> carried0 = default, carried1 = default, carried2 = default, carried3 = default;
        for (; b + 8 <= blocks; b += 8, w += 8 * T.Bytes)
        {
            var header = Avx2.GatherVector256((int*)w, headers, 1);
            var d = FloatDots.HalfToSingle(header & Vector256.Create(0xFFFF));
            var carry = T.HasMin ? FloatDots.HalfToSingle(Avx2.ShiftRightLogical(header, 16)) : d;
            var (l0, h0) = Unpack<T>(w);
            var (l1, h1) = Unpack<T>(w + 2 * T.Bytes);
            var (l2, h2) = Unpack<T>(w + 4 * T.Bytes);
            var (l3, h3) = Unpack<T>(w + 6 * T.Bytes);
            acc0 = EightBlocks(acc0, r0->Qs + 32 * b, d * Avx.LoadVector256(r0->D + b), l0, h0, l1, h1, l2, h2, l3, h3);
            acc1 = EightBlocks(acc1, r1->Qs + 32 * b, d * Avx.LoadVector256(r1->D + b), l0, h0, l1, h1, l2, h2, l3, h3);
            carried0 = Fma.MultiplyAdd(carry, Avx.LoadVector256(r0->Sum + b), carried0);
            carried1 = Fma.MultiplyAdd(carry, Avx.LoadVector256(r1->Sum + b), carried1);
            if (four)
            {
                acc2 = EightBlocks(acc2, r2->Qs + 32 * b, d * Avx.LoadVector256(r2->D + b), l0, h0, l1, h1, l2, h2, l3, h3);
                acc3 = EightBlocks(acc3, r3->Qs + 32 * b, d * Avx.LoadVector256(r3->D + b), l0, h0, l1, h1, l2, h2, l3, h3);
                carried2 = Fma.MultiplyAdd(carry, Avx.LoadVector256(r2->Sum + b), carried2);
                carried3 = Fma.MultiplyAdd(carry, Avx.LoadVector256(r3->Sum + b), carried3);
            }
        }
        float tail0 = 0, tail1 = 0, tail2 = 0, tail3 = 0;
        if (b + 4 <= blocks)
        {
            var (l0, h0) = Unpack<T>(w);
            var (l1, h1) = Unpack<T>(w + 2 * T.Bytes);
            acc0 = FourBlocks(acc0, r0->Qs + 32 * b, FourScales<T>(w, r0->D + b, r0->Sum + b, ref tail0), l0, h0, l1, h1);
            acc1 = FourBlocks(acc1, r1->Qs + 32 * b, FourScales<T>(w, r1->D + b, r1->Sum + b, ref tail1), l0, h0, l1, h1);
            if (four)
            {
                acc2 = FourBlocks(acc2, r2->Qs + 32 * b, FourScales<T>(w, r2->D + b, r2->Sum + b, ref tail2), l0, h0, l1, h1);
                acc3 = FourBlocks(acc3, r3->Qs + 32 * b, FourScales<T>(w, r3->D + b, r3->Sum + b, ref tail3), l0, h0, l1, h1);
            }
            b += 4;
            w += 4 * T.Bytes;
        }
        y[0] = Finish<T>(w, r0, b, blocks, acc0, carried0, tail0);
        y[stride] = Finish<T>(w, r1, b, blocks, acc1, carried1, tail1);
        if (four)
        {
            y[2 * stride] = Finish<T>(w, r2, b, blocks, acc2, carried2, tail2);
            y[3 * stride] = Finish<T>(w, r3, b, blocks, acc3, carried3, tail3);
        }
    }

    /// <summary>A row's result from its sums, the last blocks (fewer than four) added as <see cref="Pairs{T}"/> adds them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Finish<T>(byte* w, Q8Row* row, int b, int blocks, Vector256<float> acc, Vector256<float> carried, float tailCarried) where T : struct, INibbleLayout
    {
        float total = Vector256.Sum(acc);
        NibbleBlocks.Tail<T>(w, row, b, blocks, ref total, ref tailCarried);
        float carriedTotal = Vector256.Sum(carried) + tailCarried;
        return T.HasMin ? total + carriedTotal : total - T.Offset * carriedTotal;
    }
}
