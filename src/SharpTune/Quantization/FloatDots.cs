using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SharpTune.Quantization;

/// <summary>
/// F32, F16 and BF16 rows against the fp32 activation: fused multiply-adds on four accumulators, 8 lanes (AVX2) or
/// 16 (AVX-512). .NET exposes no F16C, so halves are widened with integer operations (exact, subnormals, infinities
/// and NaN included); bf16 is the upper half of an fp32.
/// </summary>
static unsafe class FloatDots
{
    public static float F32Avx2(byte* w, Q8Row* a, int columns) => Avx2Dot<F32Reader>(w, a->X, columns);

    public static float F16Avx2(byte* w, Q8Row* a, int columns) => Avx2Dot<F16Reader>(w, a->X, columns);

    public static float BF16Avx2(byte* w, Q8Row* a, int columns) => Avx2Dot<Bf16Reader>(w, a->X, columns);

    public static float F32Avx512(byte* w, Q8Row* a, int columns) => Avx512Dot<F32Reader>(w, a->X, columns);

    /// <summary>
    /// F16 on AVX-512 without widening loads: 32 halves in one load, the even ones shifted into the upper half of each
    /// 32-bit lane and the odd ones masked there, each then widened in place against the activation reordered to
    /// match (<see cref="Q8Row.XPairs"/>). In the upper half, an arithmetic shift by 3 puts the magnitude where an fp32's
    /// magnitude bits go (2^-112 times the value, normal or subnormal, rescaled exactly by one multiply) and copies the
    /// sign over bits 28..31, of which the mask keeps bit 31; infinities and NaN get the all-ones exponent back.
    /// </summary>
    public static float F16Avx512(byte* w, Q8Row* a, int columns) => F16Avx512<AnyHalves>(w, a, columns);

    /// <summary>
    /// <see cref="F16Avx512"/> for a matrix with no infinity or NaN (<see cref="QuantizedMatrix.FiniteHalves"/>): the
    /// widening skips giving those back their all-ones exponent, three operations of about twenty per 32 halves; for
    /// finite values the result is the same to the bit.
    /// </summary>
    public static float F16FiniteAvx512(byte* w, Q8Row* a, int columns) => F16Avx512<FiniteHalves>(w, a, columns);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float F16Avx512<T>(byte* w, Q8Row* a, int columns) where T : struct, IHalfWidening
    {
        Vector512<float> a0 = default, a1 = default;
        float* xp = a->XPairs;
        int c = 0;
        for (; c + 32 <= columns; c += 32)
        {
            var v = Avx512F.LoadVector512((int*)(w + 2 * c));
            a0 = Avx512F.FusedMultiplyAdd(T.Widen(Avx512F.ShiftLeftLogical(v, 16)), Avx512F.LoadVector512(xp + c), a0);
            a1 = Avx512F.FusedMultiplyAdd(T.Widen(v & Vector512.Create(unchecked((int)0xFFFF0000))), Avx512F.LoadVector512(xp + c + 16), a1);
        }
        float sum = Vector512.Sum(a0 + a1);
        for (; c < columns; c++) sum += Fp16.Table[((ushort*)w)[c]] * a->X[c];
        return sum;
    }

    /// <summary>The fp16 value in the upper half of each 32-bit lane (the lower half zero), widened exactly (see <see cref="F16Avx512"/>).</summary>
    interface IHalfWidening
    {
        static abstract Vector512<float> Widen(Vector512<int> upper);
    }

    struct AnyHalves : IHalfWidening
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Widen(Vector512<int> upper)
        {
            var value = FiniteHalves.Widen(upper);
            var bits = Avx512F.ShiftRightArithmetic(upper, 3);
            var special = Vector512.Equals(bits & Vector512.Create(0x0F800000), Vector512.Create(0x0F800000));
            return (value.AsInt32() | (special & Vector512.Create(0x7F800000))).AsSingle();
        }
    }

    struct FiniteHalves : IHalfWidening
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Widen(Vector512<int> upper)
        {
            var bits = Avx512F.ShiftRightArithmetic(upper, 3) & Vector512.Create(unchecked((int)0x8FFFFFFF));
            return bits.AsSingle() * Vector512.Create(5.192296858534828e33f); // 2^112
        }
    }

    public static float BF16Avx512(byte* w, Q8Row* a, int columns) => Avx512Dot<Bf16Reader>(w, a->X, columns);

    /// <summary>
    /// <see cref="F16Avx512"/> for n activation rows: each 32 halves loaded and widened once for four rows, every row summed
    /// exactly as <see cref="F16Avx512"/> sums it alone (the same two accumulators, order and tail), so a row's result
    /// does not depend on the rows beside it. The rows left over (n mod 4) go through <see cref="F16Avx512"/>.
    /// </summary>
    public static void F16RowsAvx512(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => F16RowsAvx512<AnyHalves>(w, a, n, columns, y, stride);

    /// <summary><see cref="F16RowsAvx512"/> for a matrix with no infinity or NaN, as <see cref="F16FiniteAvx512"/>.</summary>
    public static void F16FiniteRowsAvx512(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => F16RowsAvx512<FiniteHalves>(w, a, n, columns, y, stride);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void F16RowsAvx512<T>(byte* w, Q8Row* a, int n, int columns, float* y, long stride) where T : struct, IHalfWidening
    {
        var oddMask = Vector512.Create(unchecked((int)0xFFFF0000));
        int i = 0;
        for (; i + 4 <= n; i += 4)
        {
            float* p0 = a[i].XPairs, p1 = a[i + 1].XPairs, p2 = a[i + 2].XPairs, p3 = a[i + 3].XPairs;
            Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, d0 = default, d1 = default;
            int c = 0;
            for (; c + 32 <= columns; c += 32)
            {
                var v = Avx512F.LoadVector512((int*)(w + 2 * c));
                var even = T.Widen(Avx512F.ShiftLeftLogical(v, 16));
                var odd = T.Widen(v & oddMask);
                a0 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(p0 + c), a0);
                a1 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(p0 + c + 16), a1);
                b0 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(p1 + c), b0);
                b1 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(p1 + c + 16), b1);
                c0 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(p2 + c), c0);
                c1 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(p2 + c + 16), c1);
                d0 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(p3 + c), d0);
                d1 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(p3 + c + 16), d1);
            }
            FinishFour<F16Reader>(w, a + i, c, columns, Vector512.Sum(a0 + a1), Vector512.Sum(b0 + b1), Vector512.Sum(c0 + c1), Vector512.Sum(d0 + d1), y + i * stride, stride);
        }
        for (; i < n; i++) y[i * stride] = F16Avx512<T>(w, a + i, columns);
    }

    /// <summary>
    /// n activation rows against one weight row, y[i·stride] = w · xᵢ, each weight vector read once for four rows; every row
    /// summed exactly as <see cref="Avx512Dot{T}"/> sums it alone (the same four accumulators, blocks and tail), so a row's
    /// result does not depend on the rows beside it.
    /// </summary>
    public static void F32RowsAvx512(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => Avx512Rows<F32Reader>(w, a, n, columns, y, stride);

    public static void BF16RowsAvx512(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => Avx512Rows<Bf16Reader>(w, a, n, columns, y, stride);

    /// <summary>As <see cref="F32RowsAvx512"/> on AVX2, two rows at a time (sixteen registers), summed as <see cref="Avx2Dot{T}"/>.</summary>
    public static void F32RowsAvx2(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => Avx2Rows<F32Reader>(w, a, n, columns, y, stride);

    public static void BF16RowsAvx2(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => Avx2Rows<Bf16Reader>(w, a, n, columns, y, stride);

    public static void F16RowsAvx2(byte* w, Q8Row* a, int n, int columns, float* y, long stride) => Avx2Rows<F16Reader>(w, a, n, columns, y, stride);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Avx512Rows<T>(byte* w, Q8Row* a, int n, int columns, float* y, long stride) where T : struct, IReader512
    {
        int i = 0;
        for (; i + 4 <= n; i += 4)
        {
            float* x0 = a[i].X, x1 = a[i + 1].X, x2 = a[i + 2].X, x3 = a[i + 3].X;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
            int c = 0;
            for (; c + 64 <= columns; c += 64)
            {
                var w0 = T.Read16(w + c * T.Bytes);
                var w1 = T.Read16(w + (c + 16) * T.Bytes);
                var w2 = T.Read16(w + (c + 32) * T.Bytes);
                var w3 = T.Read16(w + (c + 48) * T.Bytes);
                a0 = Avx512F.FusedMultiplyAdd(w0, Avx512F.LoadVector512(x0 + c), a0);
                a1 = Avx512F.FusedMultiplyAdd(w1, Avx512F.LoadVector512(x0 + c + 16), a1);
                a2 = Avx512F.FusedMultiplyAdd(w2, Avx512F.LoadVector512(x0 + c + 32), a2);
                a3 = Avx512F.FusedMultiplyAdd(w3, Avx512F.LoadVector512(x0 + c + 48), a3);
                b0 = Avx512F.FusedMultiplyAdd(w0, Avx512F.LoadVector512(x1 + c), b0);
                b1 = Avx512F.FusedMultiplyAdd(w1, Avx512F.LoadVector512(x1 + c + 16), b1);
                b2 = Avx512F.FusedMultiplyAdd(w2, Avx512F.LoadVector512(x1 + c + 32), b2);
                b3 = Avx512F.FusedMultiplyAdd(w3, Avx512F.LoadVector512(x1 + c + 48), b3);
                c0 = Avx512F.FusedMultiplyAdd(w0, Avx512F.LoadVector512(x2 + c), c0);
                c1 = Avx512F.FusedMultiplyAdd(w1, Avx512F.LoadVector512(x2 + c + 16), c1);
                c2 = Avx512F.FusedMultiplyAdd(w2, Avx512F.LoadVector512(x2 + c + 32), c2);
                c3 = Avx512F.FusedMultiplyAdd(w3, Avx512F.LoadVector512(x2 + c + 48), c3);
                d0 = Avx512F.FusedMultiplyAdd(w0, Avx512F.LoadVector512(x3 + c), d0);
                d1 = Avx512F.FusedMultiplyAdd(w1, Avx512F.LoadVector512(x3 + c + 16), d1);
                d2 = Avx512F.FusedMultiplyAdd(w2, Avx512F.LoadVector512(x3 + c + 32), d2);
                d3 = Avx512F.FusedMultiplyAdd(w3, Avx512F.LoadVector512(x3 + c + 48), d3);
            }
            for (; c + 16 <= columns; c += 16)
            {
                var wv = T.Read16(w + c * T.Bytes);
                a0 = Avx512F.FusedMultiplyAdd(wv, Avx512F.LoadVector512(x0 + c), a0);
                b0 = Avx512F.FusedMultiplyAdd(wv, Avx512F.LoadVector512(x1 + c), b0);
                c0 = Avx512F.FusedMultiplyAdd(wv, Avx512F.LoadVector512(x2 + c), c0);
                d0 = Avx512F.FusedMultiplyAdd(wv, Avx512F.LoadVector512(x3 + c), d0);
            }
            FinishFour<T>(w, a + i, c, columns, Vector512.Sum((a0 + a1) + (a2 + a3)), Vector512.Sum((b0 + b1) + (b2 + b3)),
                Vector512.Sum((c0 + c1) + (c2 + c3)), Vector512.Sum((d0 + d1) + (d2 + d3)), y + i * stride, stride);
        }
        for (; i < n; i++) y[i * stride] = Avx512Dot<T>(w, a[i].X, columns);
    }

    /// <summary>
    /// The end of a four-row product: columns [c, columns) of rows a[0..3] added to their sums one at a time, in the
    /// one-row kernels' order (so each row stays bit-equal to its product alone), then the sums stored at y, y + stride, ...
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void FinishFour<T>(byte* w, Q8Row* a, int c, int columns, float s0, float s1, float s2, float s3, float* y, long stride) where T : struct, IReader
    {
        float* x0 = a[0].X, x1 = a[1].X, x2 = a[2].X, x3 = a[3].X;
        for (; c < columns; c++)
        {
            float wc = T.Read(w + c * T.Bytes);
            s0 += wc * x0[c];
            s1 += wc * x1[c];
            s2 += wc * x2[c];
            s3 += wc * x3[c];
        }
        y[0] = s0;
        y[stride] = s1;
        y[2 * stride] = s2;
        y[3 * stride] = s3;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Avx2Rows<T>(byte* w, Q8Row* a, int n, int columns, float* y, long stride) where T : struct, IReader
    {
        int i = 0;
        for (; i + 2 <= n; i += 2)
        {
            float* x0 = a[i].X, x1 = a[i + 1].X;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            int c = 0;
            for (; c + 32 <= columns; c += 32)
            {
                var w0 = T.Read8(w + c * T.Bytes);
                var w1 = T.Read8(w + (c + 8) * T.Bytes);
                var w2 = T.Read8(w + (c + 16) * T.Bytes);
                var w3 = T.Read8(w + (c + 24) * T.Bytes);
                a0 = Fma.MultiplyAdd(w0, Avx.LoadVector256(x0 + c), a0);
                a1 = Fma.MultiplyAdd(w1, Avx.LoadVector256(x0 + c + 8), a1);
                a2 = Fma.MultiplyAdd(w2, Avx.LoadVector256(x0 + c + 16), a2);
                a3 = Fma.MultiplyAdd(w3, Avx.LoadVector256(x0 + c + 24), a3);
                b0 = Fma.MultiplyAdd(w0, Avx.LoadVector256(x1 + c), b0);
                b1 = Fma.MultiplyAdd(w1, Avx.LoadVector256(x1 + c + 8), b1);
                b2 = Fma.MultiplyAdd(w2, Avx.LoadVector256(x1 + c + 16), b2);
                b3 = Fma.MultiplyAdd(w3, Avx.LoadVector256(x1 + c + 24), b3);
            }
            for (; c + 8 <= columns; c += 8)
            {
                var wv = T.Read8(w + c * T.Bytes);
                a0 = Fma.MultiplyAdd(wv, Avx.LoadVector256(x0 + c), a0);
                b0 = Fma.MultiplyAdd(wv, Avx.LoadVector256(x1 + c), b0);
            }
            float s0 = Vector256.Sum((a0 + a1) + (a2 + a3)), s1 = Vector256.Sum((b0 + b1) + (b2 + b3));
            for (; c < columns; c++)
            {
                float wc = T.Read(w + c * T.Bytes);
                s0 += wc * x0[c];
                s1 += wc * x1[c];
            }
            y[i * stride] = s0;
            y[(i + 1) * stride] = s1;
        }
        for (; i < n; i++) y[i * stride] = Avx2Dot<T>(w, a[i].X, columns);
    }

    interface IReader
    {
        static abstract int Bytes { get; }
        static abstract Vector256<float> Read8(byte* p);
        static abstract float Read(byte* p);
    }

    // F16 has its own AVX-512 loop (F16Avx512); F32 and BF16 share this one.
    interface IReader512 : IReader
    {
        static abstract Vector512<float> Read16(byte* p);
    }

    struct F32Reader : IReader512
    {
        public static int Bytes => 4;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Read8(byte* p) => Avx.LoadVector256((float*)p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Read16(byte* p) => Avx512F.LoadVector512((float*)p);
        public static float Read(byte* p) => *(float*)p;
    }

    struct Bf16Reader : IReader512
    {
        public static int Bytes => 2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Read8(byte* p) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((ushort*)p), 16).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Read16(byte* p) => Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Avx.LoadVector256((ushort*)p)), 16).AsSingle();
        public static float Read(byte* p) => BitConverter.Int32BitsToSingle(*(ushort*)p << 16);
    }

    // fp16 → fp32: normal numbers re-biased by adding (127 − 15) << 23 to the shifted bits, infinities and NaN by
    // (255 − 31) << 23; subnormals (exponent 0) as their integer mantissa times 2^-24, all exact.
    struct F16Reader : IReader
    {
        public static int Bytes => 2;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Read8(byte* p) => HalfToSingle(Avx2.ConvertToVector256Int32((ushort*)p));

        public static float Read(byte* p) => Fp16.Table[*(ushort*)p];
    }

    /// <summary>Eight fp16 values (the low 16 bits of each lane) widened exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> HalfToSingle(Vector256<int> h)
    {
        var magnitude = h & Vector256.Create(0x7FFF);
        var bias = Avx2.BlendVariable(Vector256.Create(0x38000000), Vector256.Create(0x70000000), Avx2.CompareGreaterThan(magnitude, Vector256.Create(0x7BFF)));
        var normal = (Avx2.ShiftLeftLogical(magnitude, 13) + bias).AsSingle();
        var subnormal = Avx.ConvertToVector256Single(magnitude) * Vector256.Create(1f / 16777216);
        var value = Avx.BlendVariable(normal, subnormal, Avx2.CompareGreaterThan(Vector256.Create(0x400), magnitude).AsSingle());
        return (value.AsInt32() | Avx2.ShiftLeftLogical(h & Vector256.Create(0x8000), 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Avx2Dot<T>(byte* w, float* x, int columns) where T : struct, IReader
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int c = 0;
        for (; c + 32 <= columns; c += 32)
        {
            a0 = Fma.MultiplyAdd(T.Read8(w + c * T.Bytes), Avx.LoadVector256(x + c), a0);
            a1 = Fma.MultiplyAdd(T.Read8(w + (c + 8) * T.Bytes), Avx.LoadVector256(x + c + 8), a1);
            a2 = Fma.MultiplyAdd(T.Read8(w + (c + 16) * T.Bytes), Avx.LoadVector256(x + c + 16), a2);
            a3 = Fma.MultiplyAdd(T.Read8(w + (c + 24) * T.Bytes), Avx.LoadVector256(x + c + 24), a3);
        }
        for (; c + 8 <= columns; c += 8) a0 = Fma.MultiplyAdd(T.Read8(w + c * T.Bytes), Avx.LoadVector256(x + c), a0);
        float sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        for (; c < columns; c++) sum += T.Read(w + c * T.Bytes) * x[c];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Avx512Dot<T>(byte* w, float* x, int columns) where T : struct, IReader512
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int c = 0;
        for (; c + 64 <= columns; c += 64)
        {
            a0 = Avx512F.FusedMultiplyAdd(T.Read16(w + c * T.Bytes), Avx512F.LoadVector512(x + c), a0);
            a1 = Avx512F.FusedMultiplyAdd(T.Read16(w + (c + 16) * T.Bytes), Avx512F.LoadVector512(x + c + 16), a1);
            a2 = Avx512F.FusedMultiplyAdd(T.Read16(w + (c + 32) * T.Bytes), Avx512F.LoadVector512(x + c + 32), a2);
            a3 = Avx512F.FusedMultiplyAdd(T.Read16(w + (c + 48) * T.Bytes), Avx512F.LoadVector512(x + c + 48), a3);
        }
        for (; c + 16 <= columns; c += 16) a0 = Avx512F.FusedMultiplyAdd(T.Read16(w + c * T.Bytes), Avx512F.LoadVector512(x + c), a0);
        float sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        for (; c < columns; c++) sum += T.Read(w + c * T.Bytes) * x[c];
        return sum;
    }
}
