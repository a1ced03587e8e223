using System.Numerics;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace SharpTune.Models.Common;

/// <summary>
/// Dropout with the keep-mask drawn in managed code. libtorch's CPU dropout draws one random number per
/// element through its generator, and that made dropout the slowest part of a BERT training step after the
/// matrix products (the speed suite's profile: about a quarter of the step, most of it in the attention
/// probabilities). Here a xoshiro256** generator, seeded from torch's generator so <c>manual_seed</c> still
/// fixes every mask, gives 16 bits per element, in fixed blocks of 2^20 elements filled in parallel (each
/// block with its own stream, so the mask does not depend on the thread count).
/// </summary>
/// <remarks>
/// An element is dropped with probability <c>round(p * 65536) / 65536</c> (p = 0.1 drops 0.1000061) and the
/// kept ones are scaled by the exact inverse of the keep probability, so the expected output equals the input.
/// The scaled mask is fp32 and is what autograd keeps for the backward pass (one multiplication each way);
/// a bf16 input comes out fp32, which is what the residual add after a bf16 product wants anyway.
/// </remarks>
public static class FastDropout
{
    const int BlockSize = 1 << 20;

    /// <summary>Drops elements of <paramref name="input"/> with probability <paramref name="p"/> when training.</summary>
    public static Tensor Apply(Tensor input, double p, bool training)
    {
        if (!training || p == 0) return input;
        if (p is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1]");
        long count = input.numel();
        if (p == 1 || input.device_type != TorchSharp.DeviceType.CPU || count * sizeof(float) > int.MaxValue || !input.is_floating_point())
            return nn.functional.dropout(input, p, true);
        return input * KeepMask(input.shape, p);
    }

    /// <summary>An fp32 tensor of the given shape holding 0 (dropped) or 1 / (1 - p') (kept).</summary>
    public static Tensor KeepMask(long[] shape, double p)
    {
        ulong seed = (ulong)randint(long.MinValue, long.MaxValue, [1], dtype: ScalarType.Int64).item<long>();
        var mask = empty(shape, ScalarType.Float32);
        uint dropped = (uint)Math.Round(p * 65536);
        float scale = (float)(65536.0 / (65536 - dropped));
        int length = (int)mask.numel();
        int blocks = (length + BlockSize - 1) / BlockSize;
        Parallel.For(0, blocks, block =>
        {
            var all = MemoryMarshal.Cast<byte, float>(mask.bytes);
            Fill(all.Slice(block * BlockSize, Math.Min(BlockSize, length - block * BlockSize)), seed, (ulong)block, dropped, scale);
        });
        return mask;
    }

    /// <summary>xoshiro256** (Blackman and Vigna), seeded by SplitMix64 from the seed and the block number.</summary>
    static void Fill(Span<float> block, ulong seed, ulong blockNumber, uint dropped, float scale)
    {
        ulong s0 = SplitMix(seed ^ (blockNumber * 0xD1B54A32D192ED03UL)), s1 = SplitMix(s0), s2 = SplitMix(s1), s3 = SplitMix(s2);
        int i = 0;
        while (i < block.Length)
        {
            ulong random = BitOperations.RotateLeft(s1 * 5, 7) * 9;
            ulong t = s1 << 17;
            s2 ^= s0;
            s3 ^= s1;
            s1 ^= s2;
            s0 ^= s3;
            s2 ^= t;
            s3 = BitOperations.RotateLeft(s3, 45);
            for (int lane = 0; lane < 4 && i < block.Length; lane++, i++)
                block[i] = (uint)(random >> (16 * lane) & 0xFFFF) < dropped ? 0f : scale;
        }
    }

    static ulong SplitMix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }
}

/// <summary>A module over <see cref="FastDropout"/>, in place of <c>nn.Dropout</c> (no parameters, no state-dict keys).</summary>
public sealed class FastDropoutModule(double p) : nn.Module<Tensor, Tensor>(nameof(FastDropoutModule))
{
    public double P { get; } = p >= 0 && p <= 1 ? p : throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1]");

    public override Tensor forward(Tensor input) => FastDropout.Apply(input, P, training);
}
