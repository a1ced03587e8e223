using System.Runtime.CompilerServices;

namespace SharpTune.Quantization;

/// <summary>Where a nibble block type (Q4_0, Q4_1, Q5_0, Q5_1) keeps its parts, for the kernels that read it whole.</summary>
interface INibbleLayout
{
    static abstract int Bytes { get; }

    /// <summary>The 16 bytes of nibbles: low nibbles are elements 0..15, high ones 16..31.</summary>
    static abstract int Qs { get; }

    /// <summary>Where the 32 fifth bits are, or −1.</summary>
    static abstract int Qh { get; }

    /// <summary>x = d·(q − Offset), or x = d·q + m when HasMin (the fp16 m after d).</summary>
    static abstract int Offset { get; }

    static abstract bool HasMin { get; }
}

struct Q4_0Layout : INibbleLayout
{
    public static int Bytes => 18;
    public static int Qs => 2;
    public static int Qh => -1;
    public static int Offset => 8;
    public static bool HasMin => false;
}

struct Q4_1Layout : INibbleLayout
{
    public static int Bytes => 20;
    public static int Qs => 4;
    public static int Qh => -1;
    public static int Offset => 0;
    public static bool HasMin => true;
}

struct Q5_0Layout : INibbleLayout
{
    public static int Bytes => 22;
    public static int Qs => 6;
    public static int Qh => 2;
    public static int Offset => 16;
    public static bool HasMin => false;
}

struct Q5_1Layout : INibbleLayout
{
    public static int Bytes => 24;
    public static int Qs => 8;
    public static int Qh => 4;
    public static int Offset => 0;
    public static bool HasMin => true;
}

static unsafe class NibbleBlocks
{
    /// <summary>
    /// Blocks [b, blocks) of a row, fewer than four, whose activations keep the natural layout (the split-halves layout
    /// regroups whole groups of four only): integer sums in plain C#, added to <paramref name="total"/> and their
    /// carried terms (m·Sum, or d·Sum for the offset) to <paramref name="carried"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Tail<T>(byte* w, Q8Row* a, int b, int blocks, ref float total, ref float carried) where T : struct, INibbleLayout
    {
        for (; b < blocks; b++, w += T.Bytes)
        {
            sbyte* yb = a->Qs + 32 * b;
            float d = Fp16.ToSingle(w);
            int s = 0;
            for (int j = 0; j < 16; j++)
            {
                int low = w[T.Qs + j] & 0xF, high = w[T.Qs + j] >> 4;
                if (T.Qh >= 0)
                {
                    uint qh = *(uint*)(w + T.Qh);
                    low |= (int)((qh >> j) & 1) << 4;
                    high |= (int)((qh >> (j + 16)) & 1) << 4;
                }
                s += low * yb[j] + high * yb[j + 16];
            }
            total += d * a->D[b] * s;
            carried += (T.HasMin ? Fp16.ToSingle(w + 2) : d) * a->Sum[b];
        }
    }
}
