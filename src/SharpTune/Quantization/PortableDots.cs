using System.Runtime.CompilerServices;
namespace SharpTune.Quantization;

/// <summary>
/// The portable path: dot products of one weight row (blocks) with one activation row, in plain C#, with the same
/// integer sums per block as the SIMD paths (so they differ from these only in the order floats are added).
/// </summary>
static unsafe class PortableDots
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float F32(byte* w, Q8Row* a, int columns)
    {
        float* x = a->X, v = (float*)w;
        float sum = 0;
        for (int c = 0; c < columns; c++) sum += v[c] * x[c];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float F16(byte* w, Q8Row* a, int columns)
    {
        float* x = a->X;
        ushort* v = (ushort*)w;
        float sum = 0;
        for (int c = 0; c < columns; c++) sum += Fp16.Table[v[c]] * x[c];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float BF16(byte* w, Q8Row* a, int columns)
    {
        float* x = a->X;
        ushort* v = (ushort*)w;
        float sum = 0;
        for (int c = 0; c < columns; c++) sum += BitConverter.Int32BitsToSingle(v[c] << 16) * x[c];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q8_0(byte* w, Q8Row* a, int columns)
    {
        float sum = 0;
        for (int b = 0; b < columns / 32; b++, w += 34)
        {
            sbyte* q = (sbyte*)(w + 2), y = a->Qs + 32 * b;
            int s = 0;
            for (int j = 0; j < 32; j++) s += q[j] * y[j];
            sum += Fp16.ToSingle(w) * a->D[b] * s;
        }
        return sum;
    }

    // Q4_0/Q4_1: Σ nibble·y as integers; Q4_0 subtracts 8·Σy (x = (q − 8)·d), Q4_1 adds the min times Σy.
    public static float Q4_0(byte* w, Q8Row* a, int columns) => Q4(w, a, columns, withMin: false);

    public static float Q4_1(byte* w, Q8Row* a, int columns) => Q4(w, a, columns, withMin: true);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Q4(byte* w, Q8Row* a, int columns, bool withMin)
    {
        int size = withMin ? 20 : 18, header = withMin ? 4 : 2;
        float sum = 0;
        for (int b = 0; b < columns / 32; b++, w += size)
        {
            byte* q = w + header;
            sbyte* y = a->Qs + 32 * b;
            int s = 0;
            for (int j = 0; j < 16; j++) s += (q[j] & 0xF) * y[j] + (q[j] >> 4) * y[j + 16];
            float d = Fp16.ToSingle(w);
            sum += d * a->D[b] * s + (withMin ? Fp16.ToSingle(w + 2) * a->Sum[b] : -8 * d * a->Sum[b]);
        }
        return sum;
    }

    public static float Q5_0(byte* w, Q8Row* a, int columns) => Q5(w, a, columns, withMin: false);

    public static float Q5_1(byte* w, Q8Row* a, int columns) => Q5(w, a, columns, withMin: true);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Q5(byte* w, Q8Row* a, int columns, bool withMin)
    {
        int size = withMin ? 24 : 22, header = withMin ? 4 : 2;
        float sum = 0;
        for (int b = 0; b < columns / 32; b++, w += size)
        {
            uint qh = *(uint*)(w + header);
            byte* q = w + header + 4;
            sbyte* y = a->Qs + 32 * b;
            int s = 0;
            for (int j = 0; j < 16; j++)
            {
                int low = (q[j] & 0xF) | (int)((qh >> j) & 1) << 4, high = (q[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
                s += low * y[j] + high * y[j + 16];
            }
            float d = Fp16.ToSingle(w);
            sum += d * a->D[b] * s + (withMin ? Fp16.ToSingle(w + 2) * a->Sum[b] : -16 * d * a->Sum[b]);
        }
        return sum;
    }

    // Q4_K/Q5_K: per super-block d·Σ scale_j·Σ(q·y) − dmin·Σ min_j·Σy over the eight sub-blocks of 32, times D.
    public static float Q4_K(byte* w, Q8Row* a, int columns) => KWithMins(w, a, columns, fifthBit: false);

    public static float Q5_K(byte* w, Q8Row* a, int columns) => KWithMins(w, a, columns, fifthBit: true);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float KWithMins(byte* w, Q8Row* a, int columns, bool fifthBit)
    {
        int size = fifthBit ? 176 : 144;
        float sum = 0;
        for (int b = 0; b < columns / 256; b++, w += size)
        {
            var packed = new ReadOnlySpan<byte>(w + 4, 12);
            byte* qh = w + 16, qs = w + (fifthBit ? 48 : 16);
            sbyte* y = a->Qs + 256 * b;
            short* bsums = a->BSums + 16 * b;
            int scaled = 0, mins = 0;
            for (int j = 0; j < 8; j++)
            {
                var (sc, m) = KQuantizers.ScaleMin(packed, j);
                byte* q = qs + 32 * (j / 2);
                int shift = 4 * (j % 2), s = 0;
                for (int l = 0; l < 32; l++)
                {
                    int v = (q[l] >> shift) & 0xF;
                    if (fifthBit) v |= ((qh[l] >> j) & 1) << 4;
                    s += v * y[32 * j + l];
                }
                scaled += sc * s;
                mins += m * (bsums[2 * j] + bsums[2 * j + 1]);
            }
            float dy = a->D[b];
            sum += dy * Fp16.ToSingle(w) * scaled - dy * Fp16.ToSingle(w + 2) * mins;
        }
        return sum;
    }

    // Q6_K: d·Σ scale_k·Σ(q − 32)·y over sixteen sub-blocks of 16, times D; the −32 taken through the sums of y.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q6_K(byte* w, Q8Row* a, int columns)
    {
        float sum = 0;
        for (int b = 0; b < columns / 256; b++, w += 210)
        {
            sbyte* sc = (sbyte*)(w + 192), y = a->Qs + 256 * b;
            short* bsums = a->BSums + 16 * b;
            int total = 0;
            for (int half = 0; half < 2; half++)
            {
                byte* ql = w + 64 * half, qh = w + 128 + 32 * half;
                sbyte* yh = y + 128 * half;
                sbyte* sch = sc + 8 * half;
                for (int l = 0; l < 32; l++)
                {
                    int s = l / 16;
                    int q1 = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
                    int q2 = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                    int q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                    int q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                    total += sch[s] * q1 * yh[l] + sch[s + 2] * q2 * yh[l + 32] + sch[s + 4] * q3 * yh[l + 64] + sch[s + 6] * q4 * yh[l + 96];
                }
            }
            for (int k = 0; k < 16; k++) total -= 32 * sc[k] * bsums[k];
            sum += a->D[b] * Fp16.ToSingle(w + 208) * total;
        }
        return sum;
    }
}
