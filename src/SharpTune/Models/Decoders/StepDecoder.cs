using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders;

/// <summary>
/// A model whose decode steps can run without libtorch: one new token per row, a handful of rows, on the block kernels
/// and <see cref="Common.StepMath"/>. At batch 1 a libtorch operation costs more in dispatch than its arithmetic on one
/// row (a 0.5B decoder's step is some 600 of them), so generation takes this path after the prompt's forward.
/// </summary>
public interface IStepDecoding
{
    /// <summary>
    /// An empty step decoder over this model's weights as they are now (rows come through <see cref="StepDecoder.Join"/>
    /// or <see cref="StepDecoder.Prefill(IReadOnlyList{int}, int, float*)"/>), or null when this model, as it is configured
    /// now, has none (a method wrapping its layers that the step does not compute, training mode, weights that are not
    /// float32 or stored blocks): the caller then goes on with <see cref="ICausalLanguageModel.Forward"/>.
    /// </summary>
    StepDecoder? CreateStepDecoder();
}

/// <summary>
/// Decodes one token per row per <see cref="Step"/> over the model's weights as they were when it was made. Each row has
/// its own key/value rows (only its real positions: the prompt batch's left padding is gone), so rows finish and leave
/// independently (<see cref="Keep"/>).
/// </summary>
public abstract unsafe class StepDecoder : IDisposable
{
    /// <summary>The rows decoding now.</summary>
    public abstract int Rows { get; }

    /// <summary>The vocabulary: the width of a row of logits.</summary>
    public abstract int VocabSize { get; }

    /// <summary>Positions row <paramref name="row"/> holds.</summary>
    public abstract int Length(int row);

    /// <summary>Feeds one token per row (at the row's next position) and writes the next-token logits, (Rows, V) float32.</summary>
    public abstract void Step(ReadOnlySpan<long> tokens, float* logits);

    /// <summary>Prompts longer than this are better computed by the model's forward (many rows a product) and <see cref="Join"/>ed.</summary>
    public abstract int PrefillLimit { get; }

    /// <summary>
    /// Adds a row computed from its <paramref name="prompt"/> here (a short prompt: at one or a few rows a product the
    /// modules' forward costs more in dispatch than in arithmetic) and writes its last position's logits (V).
    /// </summary>
    public abstract void Prefill(IReadOnlyList<int> prompt, int capacity, float* logits);

    /// <summary>Adds a row per prompt (<see cref="Prefill(IReadOnlyList{int}, int, float*)"/>) and returns their last positions' logits, (B, V) float32.</summary>
    public Tensor Prefill(IReadOnlyList<IReadOnlyList<int>> prompts, int capacity)
    {
        var logits = empty(prompts.Count, VocabSize, ScalarType.Float32);
        fixed (byte* p = logits.bytes)
            for (int b = 0; b < prompts.Count; b++) Prefill(prompts[b], capacity, (float*)p + (long)b * VocabSize);
        return logits;
    }

    /// <summary>Feeds one token per row and returns the logits as a (Rows, V) float32 tensor.</summary>
    public Tensor Step(ReadOnlySpan<long> tokens)
    {
        var logits = empty(Rows, VocabSize, ScalarType.Float32);
        fixed (byte* p = logits.bytes) Step(tokens, (float*)p);
        return logits;
    }

    /// <summary>Keeps only the rows listed (in that order); the others' positions are freed.</summary>
    public abstract void Keep(IReadOnlyList<int> rows);

    /// <summary>
    /// Adds the rows of a prompt cache after these, from <see cref="ICausalLanguageModel.Forward"/> with
    /// <paramref name="attentionMask"/> (B, P), 1 on real positions; <paramref name="cache"/> is left as it was.
    /// </summary>
    /// <param name="capacity">Positions each row will hold at most (prompt and generated tokens); more are made room for.</param>
    public abstract void Join(KeyValueCache cache, Tensor attentionMask, int capacity);

    /// <summary>A step decoder of <paramref name="model"/> holding the rows of <paramref name="cache"/>, or null when the model has none.</summary>
    public static StepDecoder? Start(ICausalLanguageModel model, KeyValueCache cache, Tensor attentionMask, int capacity)
    {
        if ((model as IStepDecoding)?.CreateStepDecoder() is not { } decoder) return null;
        try { decoder.Join(cache, attentionMask, capacity); }
        catch { decoder.Dispose(); throw; }
        return decoder;
    }

    protected abstract void Dispose(bool disposing);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    ~StepDecoder() => Dispose(false);
}

/// <summary>
/// One row's keys and values: per layer, (KV heads, capacity, D) floats each, in native memory; doubles its capacity
/// when full.
/// </summary>
public sealed unsafe class RowKeyValues : IDisposable
{
    readonly int layers, keyValueHeads, headDim;
    float* keys, values;

    public RowKeyValues(int layers, int keyValueHeads, int headDim, int capacity)
    {
        if (capacity < 1) throw new ArgumentOutOfRangeException(nameof(capacity), $"a row holds at least one position, got {capacity}");
        (this.layers, this.keyValueHeads, this.headDim) = (layers, keyValueHeads, headDim);
        Capacity = capacity;
        keys = Allocate(capacity);
        values = Allocate(capacity);
    }

    /// <summary>Positions held.</summary>
    public int Length { get; private set; }

    public int Capacity { get; private set; }

    /// <summary>Layer <paramref name="layer"/>'s keys of head <paramref name="head"/>: (capacity, D), the first <see cref="Length"/> filled.</summary>
    public float* Keys(int layer, int head) => keys + ((long)layer * keyValueHeads + head) * Capacity * headDim;

    public float* Values(int layer, int head) => values + ((long)layer * keyValueHeads + head) * Capacity * headDim;

    /// <summary>Makes room for <paramref name="more"/> positions after <see cref="Length"/> (written through <see cref="Keys"/>, then counted by <see cref="Advance"/>).</summary>
    public void Reserve(int more = 1)
    {
        if (Length + more <= Capacity) return;
        int grown = Math.Max(Capacity * 2, 16);
        while (grown < Length + more) grown *= 2;
        keys = Grown(keys, grown);
        values = Grown(values, grown);
        Capacity = grown;
    }

    /// <summary>Counts the <paramref name="count"/> positions written from <see cref="Length"/> on, in every layer.</summary>
    public void Advance(int count = 1) => Length += count;

    /// <summary>Copies a prompt's real positions from a libtorch cache row: (KV, P, D) per layer at <paramref name="source"/>[layer], positions where <paramref name="real"/>.</summary>
    public void Fill(IReadOnlyList<nint> source, int promptPositions, ReadOnlySpan<bool> real)
    {
        int count = 0;
        foreach (bool r in real) if (r) count++;
        if (count > Capacity) throw new ArgumentException($"{count} positions do not fit a row of capacity {Capacity}", nameof(real));
        for (int layer = 0; layer < layers; layer++)
        {
            float* k = (float*)source[2 * layer], v = (float*)source[2 * layer + 1];
            for (int head = 0; head < keyValueHeads; head++)
            {
                int at = 0;
                for (int t = 0; t < promptPositions; t++)
                {
                    if (!real[t]) continue;
                    long from = ((long)head * promptPositions + t) * headDim;
                    Buffer.MemoryCopy(k + from, Keys(layer, head) + (long)at * headDim, 4L * headDim, 4L * headDim);
                    Buffer.MemoryCopy(v + from, Values(layer, head) + (long)at * headDim, 4L * headDim, 4L * headDim);
                    at++;
                }
            }
        }
        Length = count;
    }

    float* Allocate(int capacity) => (float*)NativeMemory.Alloc((nuint)((long)layers * keyValueHeads * capacity * headDim), sizeof(float));

    float* Grown(float* old, int capacity)
    {
        float* fresh = Allocate(capacity);
        long bytes = 4L * Length * headDim;
        for (int slab = 0; slab < layers * keyValueHeads; slab++)
            Buffer.MemoryCopy(old + (long)slab * Capacity * headDim, fresh + (long)slab * capacity * headDim, bytes, bytes);
        NativeMemory.Free(old);
        return fresh;
    }

    public void Dispose()
    {
        if (keys == null) return;
        NativeMemory.Free(keys);
        NativeMemory.Free(values);
        keys = values = null;
    }
}
