using System.Runtime.CompilerServices;
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
    // Constants as properties: Vector256.Create of a constant folds into the code, a static readonly field is a load.
    static Vector256<short> Ones => Vector256.Create((short)1);
    internal static Vector256<byte> Low4 => Vector256.Create((byte)0x0F);

    // u8·s8 products summed in fours: vpmaddubsw then vpmaddwd by one (AVX-VNNI's vpdpbusd where the CPU has it; the
    // operands here never reach vpmaddubsw's 16-bit saturation, so both give the same integers).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Dot(Vector256<byte> u, Vector256<sbyte> s) => AvxVnni.IsSupported
        ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, u, s) // vpdpbusd: the same sums of four in one instruction
        : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Ones);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Dot(Vector256<byte> u, Vector256<sbyte> s, Vector256<short> scale) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), scale);

    // The 32 nibbles of a 16-byte Q4 block in element order: low nibbles are elements 0..15, high ones 16..31.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<byte> Nibbles(byte* q)
    {
        var v = Sse2.LoadVector128(q);
        return Vector256.Create(v & Vector128.Create((byte)0x0F), Sse2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F));
    }

    // 0x10 in byte j where bit j of bits is set (the fifth bit of Q5 blocks).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> FifthBits(uint bits)
    {
        var spread = Avx2.Shuffle(Vector256.Create(bits).AsByte(),
            Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        var set = Avx2.CompareEqual(spread | Vector256.Create(0x7FBFDFEFF7FBFDFEUL).AsByte(), Vector256<byte>.AllBitsSet);
        return set & Vector256.Create((byte)0x10);
    }

    public static float Q8_0(byte* w, Q8Row* a, int columns) => Blocks32<Q8_0Block>(w, a, columns);

    public static float Q5_0(byte* w, Q8Row* a, int columns) => Blocks32<Q5_0Block>(w, a, columns);

    public static float Q5_1(byte* w, Q8Row* a, int columns) => Blocks32<Q5_1Block>(w, a, columns);

    /// <summary>A 32-value block type: its size, its integer dot product with 32 activation bytes (eight partial sums).</summary>
    interface IBlock32
    {
        static abstract int Bytes { get; }

        /// <summary>x = d·(q − Offset) (Q4_0 8, Q5_0 16, Q8_0 0), or x = d·q + m when HasMin (the fp16 m after d).</summary>
        static abstract int Offset { get; }

        static abstract bool HasMin { get; }

        /// <summary>The block's 32 values as the dot product takes them (once per block, however many rows meet it).</summary>
        static abstract Vector256<byte> Unpack(byte* w);

        /// <summary>The unpacked block against 32 activation bytes: eight partial sums.</summary>
        static abstract Vector256<int> Dot(Vector256<byte> unpacked, sbyte* y);

        /// <summary>The same from the block's bytes, as one expression (measured faster for one row than the two steps).</summary>
        static abstract Vector256<int> Dot(byte* w, sbyte* y);
    }

    struct Q8_0Block : IBlock32
    {
        public static int Bytes => 34;
        public static int Offset => 0;
        public static bool HasMin => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Unpack(byte* w) => Avx.LoadVector256(w + 2);

        // |q|·(y with q's sign), as ggml: vpmaddubsw wants its first operand unsigned.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<byte> unpacked, sbyte* y)
        {
            var q = unpacked.AsSByte();
            return Avx2Dots.Dot(Avx2.Abs(q), Avx2.Sign(Avx.LoadVector256(y), q));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(byte* w, sbyte* y)
        {
            var q = Avx.LoadVector256((sbyte*)(w + 2));
            return Avx2Dots.Dot(Avx2.Abs(q), Avx2.Sign(Avx.LoadVector256(y), q));
        }
    }

    struct Q5_0Block : IBlock32
    {
        public static int Bytes => 22;
        public static int Offset => 16;
        public static bool HasMin => false;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Unpack(byte* w) => Nibbles(w + 6) | FifthBits(*(uint*)(w + 2));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<byte> unpacked, sbyte* y) => Avx2Dots.Dot(unpacked, Avx.LoadVector256(y));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(byte* w, sbyte* y) => Avx2Dots.Dot(Nibbles(w + 6) | FifthBits(*(uint*)(w + 2)), Avx.LoadVector256(y));
    }

    struct Q5_1Block : IBlock32
    {
        public static int Bytes => 24;
        public static int Offset => 0;
        public static bool HasMin => true;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Unpack(byte* w) => Nibbles(w + 8) | FifthBits(*(uint*)(w + 4));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<byte> unpacked, sbyte* y) => Avx2Dots.Dot(unpacked, Avx.LoadVector256(y));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(byte* w, sbyte* y) => Avx2Dots.Dot(Nibbles(w + 8) | FifthBits(*(uint*)(w + 4)), Avx.LoadVector256(y));
    }

    // Eight blocks' partial sums reduced to one vector whose lane i is block i's sum (two levels of vphaddd, then the
    // two 128-bit halves added).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Reduce8(Vector256<int> p0, Vector256<int> p1, Vector256<int> p2, Vector256<int> p3,
        Vector256<int> p4, Vector256<int> p5, Vector256<int> p6, Vector256<int> p7)
    {
        var low = Avx2.HorizontalAdd(Avx2.HorizontalAdd(p0, p1), Avx2.HorizontalAdd(p2, p3));
        var high = Avx2.HorizontalAdd(Avx2.HorizontalAdd(p4, p5), Avx2.HorizontalAdd(p6, p7));
        return Avx2.Permute2x128(low, high, 0x20) + Avx2.Permute2x128(low, high, 0x31);
    }

    public static void Q8_0Rows(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => Blocks32Rows<Q8_0Block>(w, a, n, columns, y, stride);

    public static void Q5_0Rows(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => Blocks32Rows<Q5_0Block>(w, a, n, columns, y, stride);

    public static void Q5_1Rows(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => Blocks32Rows<Q5_1Block>(w, a, n, columns, y, stride);

    /// <summary>
    /// <see cref="Blocks32{T}"/> for n activation rows, two at a time: each block unpacked once for both rows, each row's
    /// sums in <see cref="Blocks32{T}"/>'s order, so every row equals its one-row product bit for bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Blocks32Rows<T>(byte* w0, Q8Row* a, int n, int columns, float* y, long stride) where T : struct, IBlock32
    {
        int i = 0;
        var offsets = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * T.Bytes;
        for (; i + 2 <= n; i += 2)
        {
            int blocks = columns / 32, b = 0;
            byte* w = w0;
            sbyte* y0 = a[i].Qs, y1 = a[i + 1].Qs;
            float* dy0 = a[i].D, dy1 = a[i + 1].D, sums0 = a[i].Sum, sums1 = a[i + 1].Sum;
            Vector256<float> acc0 = Vector256<float>.Zero, carried0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero, carried1 = Vector256<float>.Zero;
            for (; b + 8 <= blocks; b += 8, w += 8 * T.Bytes)
            {
                var u0 = T.Unpack(w);
                var u1 = T.Unpack(w + T.Bytes);
                var u2 = T.Unpack(w + 2 * T.Bytes);
                var u3 = T.Unpack(w + 3 * T.Bytes);
                var u4 = T.Unpack(w + 4 * T.Bytes);
                var u5 = T.Unpack(w + 5 * T.Bytes);
                var u6 = T.Unpack(w + 6 * T.Bytes);
                var u7 = T.Unpack(w + 7 * T.Bytes);
                sbyte* p0 = y0 + 32 * b, p1 = y1 + 32 * b;
                var dots0 = Reduce8(T.Dot(u0, p0), T.Dot(u1, p0 + 32), T.Dot(u2, p0 + 64), T.Dot(u3, p0 + 96),
                    T.Dot(u4, p0 + 128), T.Dot(u5, p0 + 160), T.Dot(u6, p0 + 192), T.Dot(u7, p0 + 224));
                var dots1 = Reduce8(T.Dot(u0, p1), T.Dot(u1, p1 + 32), T.Dot(u2, p1 + 64), T.Dot(u3, p1 + 96),
                    T.Dot(u4, p1 + 128), T.Dot(u5, p1 + 160), T.Dot(u6, p1 + 192), T.Dot(u7, p1 + 224));
                var header = Avx2.GatherVector256((int*)w, offsets, 1);
                var d = FloatDots.HalfToSingle(header & Vector256.Create(0xFFFF));
                var carry = T.HasMin ? FloatDots.HalfToSingle(Avx2.ShiftRightLogical(header, 16)) : d;
                acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(dots0), d * Avx.LoadVector256(dy0 + b), acc0);
                carried0 = Fma.MultiplyAdd(carry, Avx.LoadVector256(sums0 + b), carried0);
                acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(dots1), d * Avx.LoadVector256(dy1 + b), acc1);
                carried1 = Fma.MultiplyAdd(carry, Avx.LoadVector256(sums1 + b), carried1);
            }
            var tail0 = Vector256<float>.Zero;
            var tail1 = Vector256<float>.Zero;
            float tailCarried0 = 0, tailCarried1 = 0;
            for (; b < blocks; b++, w += T.Bytes)
            {
                float d = Fp16.ToSingle(w), carry = T.HasMin ? Fp16.ToSingle(w + 2) : d;
                var u = T.Unpack(w);
                tail0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(T.Dot(u, y0 + 32 * b)), Vector256.Create(d * dy0[b]), tail0);
                tail1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(T.Dot(u, y1 + 32 * b)), Vector256.Create(d * dy1[b]), tail1);
                tailCarried0 += carry * sums0[b];
                tailCarried1 += carry * sums1[b];
            }
            float carriedTotal0 = Vector256.Sum(carried0) + tailCarried0, total0 = Vector256.Sum(acc0 + tail0);
            float carriedTotal1 = Vector256.Sum(carried1) + tailCarried1, total1 = Vector256.Sum(acc1 + tail1);
            y[i * stride] = T.HasMin ? total0 + carriedTotal0 : total0 - T.Offset * carriedTotal0;
            y[(i + 1) * stride] = T.HasMin ? total1 + carriedTotal1 : total1 - T.Offset * carriedTotal1;
        }
        for (; i < n; i++) y[i * stride] = Blocks32<T>(w0, a + i, columns);
    }

    /// <summary>
    /// Σ over blocks of d_w·D·Σq·y (+ m·Sum, or − Offset·d_w·Sum). Eight blocks at a time: their integer sums reduced
    /// into one vector, their fp16 scales gathered and widened together, so the float work is per eight blocks.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Blocks32<T>(byte* w, Q8Row* a, int columns) where T : struct, IBlock32
    {
        int blocks = columns / 32, b = 0;
        sbyte* y = a->Qs;
        float* dy = a->D, sums = a->Sum;
        var acc = Vector256<float>.Zero;
        var carried = Vector256<float>.Zero;
        var offsets = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * T.Bytes;
        for (; b + 8 <= blocks; b += 8, w += 8 * T.Bytes)
        {
            WeightStream.Prefetch(w, 8 * T.Bytes);
            var dots = Reduce8(T.Dot(w, y + 32 * b), T.Dot(w + T.Bytes, y + 32 * b + 32), T.Dot(w + 2 * T.Bytes, y + 32 * b + 64),
                T.Dot(w + 3 * T.Bytes, y + 32 * b + 96), T.Dot(w + 4 * T.Bytes, y + 32 * b + 128), T.Dot(w + 5 * T.Bytes, y + 32 * b + 160),
                T.Dot(w + 6 * T.Bytes, y + 32 * b + 192), T.Dot(w + 7 * T.Bytes, y + 32 * b + 224));
            var header = Avx2.GatherVector256((int*)w, offsets, 1); // d in the low half, m (when there is one) in the high
            var d = FloatDots.HalfToSingle(header & Vector256.Create(0xFFFF));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(dots), d * Avx.LoadVector256(dy + b), acc);
            var carry = T.HasMin ? FloatDots.HalfToSingle(Avx2.ShiftRightLogical(header, 16)) : d;
            carried = Fma.MultiplyAdd(carry, Avx.LoadVector256(sums + b), carried);
        }
        var tail = Vector256<float>.Zero;
        float tailCarried = 0;
        for (; b < blocks; b++, w += T.Bytes)
        {
            float d = Fp16.ToSingle(w);
            tail = Fma.MultiplyAdd(Avx.ConvertToVector256Single(T.Dot(w, y + 32 * b)), Vector256.Create(d * dy[b]), tail);
            tailCarried += (T.HasMin ? Fp16.ToSingle(w + 2) : d) * sums[b];
        }
        float carriedTotal = Vector256.Sum(carried) + tailCarried;
        float total = Vector256.Sum(acc + tail);
        return T.HasMin ? total + carriedTotal : total - T.Offset * carriedTotal;
    }

    /// <summary>The eight 6-bit scales and mins of a Q4_K/Q5_K super-block (12 packed bytes at s), one per byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (ulong Scales, ulong Mins) ScalesMins(byte* s)
    {
        uint u0 = *(uint*)s, u1 = *(uint*)(s + 4), u2 = *(uint*)(s + 8);
        uint scLow = u0 & 0x3F3F3F3F, scHigh = (u2 & 0x0F0F0F0F) | ((u0 >> 6) & 0x03030303) << 4;
        uint mLow = u1 & 0x3F3F3F3F, mHigh = ((u2 >> 4) & 0x0F0F0F0F) | ((u1 >> 6) & 0x03030303) << 4;
        return (scLow | (ulong)scHigh << 32, mLow | (ulong)mHigh << 32);
    }

    // The eight mins as shorts, each twice (once per sum of 16 of its sub-block of 32): vpmaddwd with a row's sums of 16
    // gives Σ_j min_j·(bsums[2j] + bsums[2j+1]) as eight ints.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<short> MinsRepeated(ulong mins)
    {
        var m = Vector128.CreateScalar(mins).AsByte();
        return Avx2.ConvertToVector256Int16(Sse2.UnpackLow(m, m));
    }

    /// <summary>
    /// A row's super-block b added to its accumulators: its scaled sum (d·D) and its min terms (dmin·D). Every Q4_K/Q5_K
    /// kernel, one row or many, ends a super-block here, so each row's floats are added in one order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector256<float> Acc, Vector256<float> AccMins) KFinish(Vector256<int> sum, Q8Row* row, int b, float d, float m,
        Vector256<short> repeatedMins, Vector256<float> acc, Vector256<float> accMins)
    {
        float dy = row->D[b];
        var minTerms = Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx.LoadVector256(row->BSums + 16 * b), repeatedMins));
        return (Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Create(dy * d), acc), Fma.MultiplyAdd(minTerms, Vector256.Create(dy * m), accMins));
    }

    /// <summary>A super-block's eight 6-bit scales (one per byte) as shorts, in both 128-bit halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<byte> ScalesAsShorts(ulong scales)
    {
        var shorts = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(scales).AsByte());
        return Vector256.Create(shorts, shorts).AsByte();
    }

    /// <summary>Scale j of <see cref="ScalesAsShorts"/> in all sixteen shorts: one vpshufb (j a constant once inlined).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<short> ScaleOf(Vector256<byte> scales, int j) => Avx2.Shuffle(scales, Vector256.Create((short)(0x0100 + 0x0202 * j)).AsByte()).AsInt16();

    /// <summary>
    /// Values 64k..64k+63 of a Q4_K/Q5_K super-block (its nibbles at qs, its fifth bits in <paramref name="high"/>, shifted
    /// on for the next quarter): the low nibbles are sub-block 2k, the high ones 2k + 1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector256<byte> Low, Vector256<byte> Up) KQuarter(byte* qs, int k, ref Vector256<byte> high, bool fifthBit)
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
        return (low, up);
    }

    /// <summary>A quarter's 64 values against 64 activation bytes, each sub-block's pairs scaled by its scale: eight ints.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> KQuarterDot(Vector256<byte> low, Vector256<byte> up, sbyte* y, Vector256<byte> scales, int k) =>
        Dot(low, Avx.LoadVector256(y + 64 * k), ScaleOf(scales, 2 * k)) + Dot(up, Avx.LoadVector256(y + 64 * k + 32), ScaleOf(scales, 2 * k + 1));

    /// <summary>Q4_K or Q5_K, as a type argument so that each kernel is compiled for one (no test of it in the loops).</summary>
    interface IKWithMins
    {
        static abstract bool FifthBit { get; }
    }

    struct Q4K : IKWithMins
    {
        public static bool FifthBit => false;
    }

    struct Q5K : IKWithMins
    {
        public static bool FifthBit => true;
    }

    public static float Q4_K(byte* w, Q8Row* a, int columns) => KWithMins<Q4K>(w, a, columns);

    public static float Q5_K(byte* w, Q8Row* a, int columns) => KWithMins<Q5K>(w, a, columns);

    /// <summary>
    /// Per super-block: the four quarters' integer sums with their sub-block scales (broadcast by vpshufb from one vector of
    /// the eight), then d·D in float; the mins through the activation's sums of 16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float KWithMins<T>(byte* w, Q8Row* a, int columns) where T : struct, IKWithMins
    {
        bool fifthBit = T.FifthBit;
        float* halves = Fp16.Table;
        var acc = Vector256<float>.Zero;
        var accMins = Vector256<float>.Zero;
        int size = fifthBit ? 176 : 144;
        for (int b = 0; b < columns / 256; b++, w += size)
        {
            WeightStream.Prefetch(w, size);
            var (scales, mins) = ScalesMins(w + 4);
            var shorts = ScalesAsShorts(scales);
            sbyte* y = a->Qs + 256 * b;
            byte* qs = w + (fifthBit ? 48 : 16);
            var high = fifthBit ? Avx.LoadVector256(w + 16) : default;
            var (l0, u0) = KQuarter(qs, 0, ref high, fifthBit);
            var sum = KQuarterDot(l0, u0, y, shorts, 0);
            var (l1, u1) = KQuarter(qs, 1, ref high, fifthBit);
            sum += KQuarterDot(l1, u1, y, shorts, 1);
            var (l2, u2) = KQuarter(qs, 2, ref high, fifthBit);
            sum += KQuarterDot(l2, u2, y, shorts, 2);
            var (l3, u3) = KQuarter(qs, 3, ref high, fifthBit);
            sum += KQuarterDot(l3, u3, y, shorts, 3);
            (acc, accMins) = KFinish(sum, a, b, Fp16.ToSingle(halves, w), Fp16.ToSingle(halves, w + 2), MinsRepeated(mins), acc, accMins);
        }
        return Vector256.Sum(acc) - Vector256.Sum(accMins);
    }

    public static void Q4_KRows(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => KWithMinsRows<Q4K>(w, a, n, columns, y, stride);

    public static void Q5_KRows(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => KWithMinsRows<Q5K>(w, a, n, columns, y, stride);

    /// <summary>
    /// <see cref="KWithMins"/> for n activation rows, four at a time (then two, then one): each super-block's nibbles and
    /// scales are unpacked once for the rows, and each row's float sums run in <see cref="KWithMins"/>'s order (its integer sums are exact), so
    /// every row's result equals its one-row product bit for bit.
    /// </summary>
    static void KWithMinsRows<T>(byte* w0, Q8Row* a, int n, int columns, float* y, long stride) where T : struct, IKWithMins
    {
        int i = 0;
        for (; i + 4 <= n; i += 4) KWithMinsGroup<T, FourRows>(w0, a + i, columns, y + i * stride, stride);
        for (; i + 2 <= n; i += 2) KWithMinsGroup<T, TwoRows>(w0, a + i, columns, y + i * stride, stride);
        for (; i < n; i++) y[i * stride] = KWithMins<T>(w0, a + i, columns);
    }

    /// <summary>One group of <see cref="KWithMinsRows{T}"/>: two or four rows (rows 2 and 3 only where there are four).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void KWithMinsGroup<T, TRows>(byte* w, Q8Row* a, int columns, float* y, long stride) where T : struct, IKWithMins where TRows : struct, IRowCount
    {
        bool fifthBit = T.FifthBit, four = TRows.Count == 4;
        float* halves = Fp16.Table;
        int size = fifthBit ? 176 : 144;
        Q8Row* r0 = a, r1 = a + 1, r2 = a + 2, r3 = a + 3;                       // rows 2 and 3 read only where there are four
        Vector256<float> acc0 = default, accMins0 = default, acc1 = default, accMins1 = default;
        Vector256<float> acc2 = default, accMins2 = default, acc3 = default, accMins3 = default;
        for (int b = 0; b < columns / 256; b++, w += size)
        {
            var (scales, mins) = ScalesMins(w + 4);
            var shorts = ScalesAsShorts(scales);
            sbyte* y0 = r0->Qs + 256 * b, y1 = r1->Qs + 256 * b;
            sbyte* y2 = four ? r2->Qs + 256 * b : null, y3 = four ? r3->Qs + 256 * b : null;
            byte* qs = w + (fifthBit ? 48 : 16);
            var high = fifthBit ? Avx.LoadVector256(w + 16) : default;
            // The quarters unrolled, as KWithMins has them (k a constant in each call).
            var (l0, u0) = KQuarter(qs, 0, ref high, fifthBit);
            var sum0 = KQuarterDot(l0, u0, y0, shorts, 0);
            var sum1 = KQuarterDot(l0, u0, y1, shorts, 0);
            var sum2 = four ? KQuarterDot(l0, u0, y2, shorts, 0) : default;
            var sum3 = four ? KQuarterDot(l0, u0, y3, shorts, 0) : default;
            var (l1, u1) = KQuarter(qs, 1, ref high, fifthBit);
            sum0 += KQuarterDot(l1, u1, y0, shorts, 1);
            sum1 += KQuarterDot(l1, u1, y1, shorts, 1);
            if (four) { sum2 += KQuarterDot(l1, u1, y2, shorts, 1); sum3 += KQuarterDot(l1, u1, y3, shorts, 1); }
            var (l2, u2) = KQuarter(qs, 2, ref high, fifthBit);
            sum0 += KQuarterDot(l2, u2, y0, shorts, 2);
            sum1 += KQuarterDot(l2, u2, y1, shorts, 2);
            if (four) { sum2 += KQuarterDot(l2, u2, y2, shorts, 2); sum3 += KQuarterDot(l2, u2, y3, shorts, 2); }
            var (l3, u3) = KQuarter(qs, 3, ref high, fifthBit);
            sum0 += KQuarterDot(l3, u3, y0, shorts, 3);
            sum1 += KQuarterDot(l3, u3, y1, shorts, 3);
            if (four) { sum2 += KQuarterDot(l3, u3, y2, shorts, 3); sum3 += KQuarterDot(l3, u3, y3, shorts, 3); }
            float d = Fp16.ToSingle(halves, w), m = Fp16.ToSingle(halves, w + 2);
            var repeatedMins = MinsRepeated(mins);
            (acc0, accMins0) = KFinish(sum0, r0, b, d, m, repeatedMins, acc0, accMins0);
            (acc1, accMins1) = KFinish(sum1, r1, b, d, m, repeatedMins, acc1, accMins1);
            if (four)
            {
                (acc2, accMins2) = KFinish(sum2, r2, b, d, m, repeatedMins, acc2, accMins2);
                (acc3, accMins3) = KFinish(sum3, r3, b, d, m, repeatedMins, acc3, accMins3);
            }
        }
        y[0] = Vector256.Sum(acc0) - Vector256.Sum(accMins0);
        y[stride] = Vector256.Sum(acc1) - Vector256.Sum(accMins1);
        if (four)
        {
            y[2 * stride] = Vector256.Sum(acc2) - Vector256.Sum(accMins2);
            y[3 * stride] = Vector256.Sum(acc3) - Vector256.Sum(accMins3);
        }
    }

    /// <summary>
    /// A Q6_K super-block's sixteen signed scales as shorts: the first eight (values 0..127) in both halves of one
    /// vector, the last eight (128..255) in both halves of another, so that <see cref="PairScale"/> is one vpshufb.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector256<byte> First, Vector256<byte> Second) Q6Scales(sbyte* sc)
    {
        var bytes = Sse2.LoadVector128(sc);
        var first = Sse41.ConvertToVector128Int16(bytes);
        var second = Sse41.ConvertToVector128Int16(Sse2.ShiftRightLogical128BitLane(bytes, 8));
        return (Vector256.Create(first, first).AsByte(), Vector256.Create(second, second).AsByte());
    }

    /// <summary>Scale j (of a half's eight) in the low 128 bits, scale j + 1 in the high: the two sub-blocks of 16 a vector of 32 values spans.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<short> PairScale(Vector256<byte> half, int j) =>
        Avx2.Shuffle(half, Vector256.Create(Vector128.Create((short)(0x0100 + 0x0202 * j)), Vector128.Create((short)(0x0100 + 0x0202 * (j + 1)))).AsByte()).AsInt16();

    /// <summary>Half h of a Q6_K super-block (values 128h..128h+127) as four vectors of unsigned 6-bit values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector256<byte> Q1, Vector256<byte> Q2, Vector256<byte> Q3, Vector256<byte> Q4) Q6Half(byte* w, int half)
    {
        var mask = Vector256.Create((byte)0x30);
        var l0 = Avx.LoadVector256(w + 64 * half);
        var l1 = Avx.LoadVector256(w + 64 * half + 32);
        var h = Avx.LoadVector256(w + 128 + 32 * half).AsUInt16();
        return ((l0 & Low4) | (Avx2.ShiftLeftLogical(h, 4).AsByte() & mask),
            (l1 & Low4) | (Avx2.ShiftLeftLogical(h, 2).AsByte() & mask),
            (Avx2.ShiftRightLogical(l0.AsUInt16(), 4).AsByte() & Low4) | (h.AsByte() & mask),
            (Avx2.ShiftRightLogical(l1.AsUInt16(), 4).AsByte() & Low4) | (Avx2.ShiftRightLogical(h, 2).AsByte() & mask));
    }

    /// <summary>One half's 128 values against the activation at y (the half's start), by sub-block scales: eight ints.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Q6HalfDot((Vector256<byte> Q1, Vector256<byte> Q2, Vector256<byte> Q3, Vector256<byte> Q4) q, sbyte* y, Vector256<byte> scales) =>
        Dot(q.Q1, Avx.LoadVector256(y), PairScale(scales, 0)) + Dot(q.Q2, Avx.LoadVector256(y + 32), PairScale(scales, 2))
        + Dot(q.Q3, Avx.LoadVector256(y + 64), PairScale(scales, 4)) + Dot(q.Q4, Avx.LoadVector256(y + 96), PairScale(scales, 6));

    /// <summary>The −32 of every value, through the sums of 16: Σ_k scale_k·bsums_k·32, negated.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Q6Offset(sbyte* sc, short* bsums) =>
        -Avx2.ShiftLeftLogical(Avx2.MultiplyAddAdjacent(Avx.LoadVector256(bsums), Avx2.ConvertToVector256Int16(Sse2.LoadVector128(sc))), 5);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q6_K(byte* w, Q8Row* a, int columns)
    {
        float* halves = Fp16.Table;
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < columns / 256; b++, w += 210)
        {
            WeightStream.Prefetch(w, 210);
            sbyte* sc = (sbyte*)(w + 192), y = a->Qs + 256 * b;
            var (first, second) = Q6Scales(sc);
            var sum = Q6Offset(sc, a->BSums + 16 * b);
            sum += Q6HalfDot(Q6Half(w, 0), y, first);
            sum += Q6HalfDot(Q6Half(w, 1), y + 128, second);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Create(a->D[b] * Fp16.ToSingle(halves, w + 208)), acc);
        }
        return Vector256.Sum(acc);
    }

    /// <summary>
    /// <see cref="Q6_K"/> for n activation rows, four at a time where AVX-512's registers allow (then two, then one): each
    /// half super-block unpacked once for the rows, each
    /// row's float sums in <see cref="Q6_K"/>'s order, so every row equals its one-row product bit for bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Q6_KRows(byte* w0, Q8Row* a, int n, int columns, float* y, long stride)
    {
        float* halves = Fp16.Table;
        int i = 0;
        // Four rows need the sixteen more vector registers EVEX gives (with sixteen they spill: measured slower than two).
        for (; Avx512F.VL.IsSupported && i + 4 <= n; i += 4)
        {
            Q8Row* r0 = a + i, r1 = a + i + 1, r2 = a + i + 2, r3 = a + i + 3;
            Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            byte* w = w0;
            for (int b = 0; b < columns / 256; b++, w += 210)
            {
                sbyte* sc = (sbyte*)(w + 192), y0 = r0->Qs + 256 * b, y1 = r1->Qs + 256 * b, y2 = r2->Qs + 256 * b, y3 = r3->Qs + 256 * b;
                var (first, second) = Q6Scales(sc);
                var sum0 = Q6Offset(sc, r0->BSums + 16 * b);
                var sum1 = Q6Offset(sc, r1->BSums + 16 * b);
                var sum2 = Q6Offset(sc, r2->BSums + 16 * b);
                var sum3 = Q6Offset(sc, r3->BSums + 16 * b);
                var q = Q6Half(w, 0);
                sum0 += Q6HalfDot(q, y0, first);
                sum1 += Q6HalfDot(q, y1, first);
                sum2 += Q6HalfDot(q, y2, first);
                sum3 += Q6HalfDot(q, y3, first);
                q = Q6Half(w, 1);
                sum0 += Q6HalfDot(q, y0 + 128, second);
                sum1 += Q6HalfDot(q, y1 + 128, second);
                sum2 += Q6HalfDot(q, y2 + 128, second);
                sum3 += Q6HalfDot(q, y3 + 128, second);
                float d = Fp16.ToSingle(halves, w + 208);
                acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum0), Vector256.Create(r0->D[b] * d), acc0);
                acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum1), Vector256.Create(r1->D[b] * d), acc1);
                acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum2), Vector256.Create(r2->D[b] * d), acc2);
                acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum3), Vector256.Create(r3->D[b] * d), acc3);
            }
            y[i * stride] = Vector256.Sum(acc0);
            y[(i + 1) * stride] = Vector256.Sum(acc1);
            y[(i + 2) * stride] = Vector256.Sum(acc2);
            y[(i + 3) * stride] = Vector256.Sum(acc3);
        }
        for (; i + 2 <= n; i += 2)
        {
            Q8Row* r0 = a + i, r1 = a + i + 1;
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            byte* w = w0;
            for (int b = 0; b < columns / 256; b++, w += 210)
            {
                sbyte* sc = (sbyte*)(w + 192), y0 = r0->Qs + 256 * b, y1 = r1->Qs + 256 * b;
                var (first, second) = Q6Scales(sc);
                var sum0 = Q6Offset(sc, r0->BSums + 16 * b);
                var sum1 = Q6Offset(sc, r1->BSums + 16 * b);
                var q = Q6Half(w, 0);
                sum0 += Q6HalfDot(q, y0, first);
                sum1 += Q6HalfDot(q, y1, first);
                q = Q6Half(w, 1);
                sum0 += Q6HalfDot(q, y0 + 128, second);
                sum1 += Q6HalfDot(q, y1 + 128, second);
                float d = Fp16.ToSingle(halves, w + 208);
                acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum0), Vector256.Create(r0->D[b] * d), acc0);
                acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum1), Vector256.Create(r1->D[b] * d), acc1);
            }
            y[i * stride] = Vector256.Sum(acc0);
            y[(i + 1) * stride] = Vector256.Sum(acc1);
        }
        for (; i < n; i++) y[i * stride] = Q6_K(w0, a + i, columns);
    }
}
