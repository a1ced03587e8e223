using System.Buffers.Binary;

namespace SharpTune.Quantization;

/// <summary>
/// fp32 → Q4_K, Q5_K, Q6_K super-blocks of 256, following llama.cpp's reference quantizers without an importance
/// matrix (quantize_row_q4_K_ref, q5_K, q6_K with make_qkx2_quants / make_qx_quants in ggml-quants.c) operation for
/// operation, float evaluation order included, so the bytes equal llama.cpp's for the same input.
/// </summary>
static class KQuantizers
{
    const float GroupMaxEps = 1e-15f;

    // ggml's nearest_int: round half to even (its magic-number trick is exact for |x| < 2^22).
    static int NearestInt(float x) => (int)MathF.Round(x);

    static float Half(ReadOnlySpan<byte> b) => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(b));

    static void WriteHalf(Span<byte> dst, float value) => BinaryPrimitives.WriteUInt16LittleEndian(dst, BitConverter.HalfToUInt16Bits((Half)value));

    /// <summary>6-bit scale and min of sub-block j from the 12 packed bytes of a Q4_K/Q5_K super-block (get_scale_min_k4).</summary>
    internal static (int Scale, int Min) ScaleMin(ReadOnlySpan<byte> s, int j) => j < 4
        ? (s[j] & 63, s[j + 4] & 63)
        : ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4));

    public static void Q4_K(ReadOnlySpan<float> src, Span<byte> dst) => WithMins(src, dst, nmax: 15, blockBytes: 144, rmin: -1f, nstep: 20);

    public static void Q5_K(ReadOnlySpan<float> src, Span<byte> dst) => WithMins(src, dst, nmax: 31, blockBytes: 176, rmin: -0.5f, nstep: 15);

    // Q4_K / Q5_K: eight sub-blocks of 32, each with a 6-bit scale and min found by make_qkx2_quants, then the values
    // rounded again against the scales as stored.
    static void WithMins(ReadOnlySpan<float> src, Span<byte> dst, int nmax, int blockBytes, float rmin, int nstep)
    {
        Span<byte> levels = stackalloc byte[256];
        Span<byte> aux = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[8];
        Span<float> scales = stackalloc float[8];
        for (int b = 0; b < src.Length / 256; b++)
        {
            var x = src.Slice(256 * b, 256);
            var y = dst.Slice(blockBytes * b, blockBytes);
            y.Clear();
            float maxScale = 0, maxMin = 0;
            for (int j = 0; j < 8; j++)
            {
                var xs = x.Slice(32 * j, 32);
                float sumX2 = 0;
                for (int l = 0; l < 32; l++) sumX2 += xs[l] * xs[l];
                float avX = MathF.Sqrt(sumX2 / 32);
                for (int l = 0; l < 32; l++) weights[l] = avX + MathF.Abs(xs[l]);
                scales[j] = MakeQkx2Quants(nmax, xs, weights, levels.Slice(32 * j, 32), out mins[j], aux, rmin, 0.1f, nstep);
                if (scales[j] > maxScale) maxScale = scales[j];
                if (mins[j] > maxMin) maxMin = mins[j];
            }
            float invScale = maxScale > 0 ? 63f / maxScale : 0f, invMin = maxMin > 0 ? 63f / maxMin : 0f;
            var packed = y.Slice(4, 12);
            for (int j = 0; j < 8; j++)
            {
                byte ls = Math.Min((byte)63, (byte)NearestInt(invScale * scales[j]));
                byte lm = Math.Min((byte)63, (byte)NearestInt(invMin * mins[j]));
                if (j < 4)
                {
                    packed[j] = ls;
                    packed[j + 4] = lm;
                }
                else
                {
                    packed[j + 4] = (byte)((ls & 0xF) | (lm & 0xF) << 4);
                    packed[j - 4] |= (byte)(ls >> 4 << 6);
                    packed[j] |= (byte)(lm >> 4 << 6);
                }
            }
            WriteHalf(y, maxScale / 63f);
            WriteHalf(y[2..], maxMin / 63f);
            float d = Half(y), dmin = Half(y[2..]);
            for (int j = 0; j < 8; j++)
            {
                var (sc, m) = ScaleMin(packed, j);
                float dj = d * sc;
                if (dj == 0) continue;
                float dm = dmin * m;
                for (int i = 0; i < 32; i++)
                    levels[32 * j + i] = (byte)Math.Clamp(NearestInt((x[32 * j + i] + dm) / dj), 0, nmax);
            }
            if (nmax == 15)
            {
                var qs = y[16..];
                for (int k = 0; k < 4; k++)
                    for (int l = 0; l < 32; l++) qs[32 * k + l] = (byte)(levels[64 * k + l] | levels[64 * k + l + 32] << 4);
            }
            else
            {
                var qh = y.Slice(16, 32);
                var qs = y[48..];
                for (int k = 0; k < 4; k++)
                    for (int l = 0; l < 32; l++)
                    {
                        int l1 = levels[64 * k + l], l2 = levels[64 * k + l + 32];
                        if (l1 > 15) { l1 -= 16; qh[l] |= (byte)(1 << (2 * k)); }
                        if (l2 > 15) { l2 -= 16; qh[l] |= (byte)(2 << (2 * k)); }
                        qs[32 * k + l] = (byte)(l1 | l2 << 4);
                    }
            }
        }
    }

    // make_qkx2_quants: a scale and a (non-positive) min minimising the weighted squared error over a sweep of
    // candidate scales; returns the scale, the min negated in theMin.
    static float MakeQkx2Quants(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> levels, out float theMin,
        Span<byte> aux, float rmin, float rdelta, int nstep)
    {
        int n = x.Length;
        float min = x[0], max = x[0], sumW = weights[0], sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            levels.Clear();
            theMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min), scale = 1 / iscale, bestError = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
            levels[i] = (byte)l;
            float diff = scale * l + min - x[i];
            bestError += weights[i] * (diff * diff);
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
                aux[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (!(det > 0)) continue; // as ggml's `if (D > 0)`, NaN included
            float thisScale = (sumW * sumXL - sumX * sumL) / det, thisMin = (sumL2 * sumX - sumL * sumXL) / det;
            if (thisMin > 0)
            {
                thisMin = 0;
                thisScale = sumXL / sumL2;
            }
            float error = 0;
            for (int i = 0; i < n; i++)
            {
                float diff = thisScale * aux[i] + thisMin - x[i];
                error += weights[i] * (diff * diff);
            }
            if (error < bestError)
            {
                aux[..n].CopyTo(levels);
                bestError = error;
                scale = thisScale;
                min = thisMin;
            }
        }
        theMin = -min;
        return scale;
    }

    // Q6_K: sixteen sub-blocks of 16 with signed 8-bit scales (make_qx_quants, rmse_type 1), values in −32..31.
    public static void Q6_K(ReadOnlySpan<float> src, Span<byte> dst)
    {
        Span<sbyte> levels = stackalloc sbyte[256];
        Span<float> scales = stackalloc float[16];
        for (int b = 0; b < src.Length / 256; b++)
        {
            var x = src.Slice(256 * b, 256);
            var y = dst.Slice(210 * b, 210);
            float maxScale = 0, maxAbsScale = 0;
            for (int ib = 0; ib < 16; ib++)
            {
                float scale = MakeQxQuants(32, x.Slice(16 * ib, 16), levels.Slice(16 * ib, 16));
                scales[ib] = scale;
                if (MathF.Abs(scale) > maxAbsScale)
                {
                    maxAbsScale = MathF.Abs(scale);
                    maxScale = scale;
                }
            }
            y.Clear();
            if (maxAbsScale < GroupMaxEps) continue; // all zero, d = 0
            float iscale = -128f / maxScale;
            WriteHalf(y[208..], 1 / iscale);
            for (int ib = 0; ib < 16; ib++) y[192 + ib] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * scales[ib]));
            float d0 = Half(y[208..]);
            for (int j = 0; j < 16; j++)
            {
                float d = d0 * (sbyte)y[192 + j];
                if (d == 0) continue;
                for (int i = 0; i < 16; i++)
                    levels[16 * j + i] = (sbyte)(Math.Clamp(NearestInt(x[16 * j + i] / d), -32, 31) + 32);
            }
            for (int half = 0; half < 2; half++)
            {
                var l = levels.Slice(128 * half, 128);
                var ql = y.Slice(64 * half, 64);
                var qh = y.Slice(128 + 32 * half, 32);
                for (int i = 0; i < 32; i++)
                {
                    ql[i] = (byte)((l[i] & 0xF) | (l[i + 64] & 0xF) << 4);
                    ql[i + 32] = (byte)((l[i + 32] & 0xF) | (l[i + 96] & 0xF) << 4);
                    qh[i] = (byte)((l[i] >> 4) | (l[i + 32] >> 4) << 2 | (l[i + 64] >> 4) << 4 | (l[i + 96] >> 4) << 6);
                }
            }
        }
    }

    // make_qx_quants with rmse_type 1 and no importance weights (weights x²): levels in 0..2·nmax−1.
    static float MakeQxQuants(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels)
    {
        int n = x.Length;
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            levels.Clear();
            return 0f;
        }
        float iscale = -nmax / max, sumLX = 0, sumL2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            levels[i] = (sbyte)(l + nmax);
            float w = x[i] * x[i];
            sumLX += w * x[i] * l;
            sumL2 += w * l * l;
        }
        float scale = sumL2 != 0 ? sumLX / sumL2 : 0f, best = scale * sumLX;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumLX = sumL2 = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
                float w = x[i] * x[i];
                sumLX += w * x[i] * l;
                sumL2 += w * l * l;
            }
            if (sumL2 > 0 && sumLX * sumLX > best * sumL2)
            {
                for (int i = 0; i < n; i++) levels[i] = (sbyte)(nmax + Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
                scale = sumLX / sumL2;
                best = scale * sumLX;
            }
        }
        return scale;
    }
}
