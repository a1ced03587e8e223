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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float F16Avx512(byte* w, Q8Row* a, int columns)
    {
        Vector512<float> a0 = default, a1 = default;
        float* xp = a->XPairs;
        int c = 0;
        for (; c + 32 <= columns; c += 32)
        {
            var v = Avx512F.LoadVector512((int*)(w + 2 * c));
            a0 = Avx512F.FusedMultiplyAdd(Widen(Avx512F.ShiftLeftLogical(v, 16)), Avx512F.LoadVector512(xp + c), a0);
            a1 = Avx512F.FusedMultiplyAdd(Widen(v & Vector512.Create(unchecked((int)0xFFFF0000))), Avx512F.LoadVector512(xp + c + 16), a1);
        }
        float sum = Vector512.Sum(a0 + a1);
        for (; c < columns; c++) sum += Fp16.Table[((ushort*)w)[c]] * a->X[c];
        return sum;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector512<float> Widen(Vector512<int> upper)
        {
            var bits = Avx512F.ShiftRightArithmetic(upper, 3) & Vector512.Create(unchecked((int)0x8FFFFFFF));
            var value = bits.AsSingle() * Vector512.Create(5.192296858534828e33f); // 2^112
            var special = Vector512.Equals(bits & Vector512.Create(0x0F800000), Vector512.Create(0x0F800000));
            return (value.AsInt32() | (special & Vector512.Create(0x7F800000))).AsSingle();
        }
    }

    public static float BF16Avx512(byte* w, Q8Row* a, int columns) => Avx512Dot<Bf16Reader>(w, a->X, columns);

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
