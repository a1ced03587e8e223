using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders;

/// <summary>What every decoder family reports about itself (for <c>sharptune info</c>, generation and checks).</summary>
/// <param name="Family">The family's name: gpt2, llama, qwen2.</param>
public sealed record DecoderInfo(
    string Family, int Layers, int HiddenSize, int Heads, int KeyValueHeads, int HeadDim, int IntermediateSize,
    int VocabSize, int ContextLength, bool TiedEmbeddings);

/// <summary>
/// A decoder-only language model: token ids in, next-token logits out, with an optional key/value cache for
/// generation. Implemented once per family (<c>Models/Decoders/&lt;Family&gt;</c>); everything above the models
/// (generation, scoring, fine-tuning, export) talks to this.
/// </summary>
public interface ICausalLanguageModel : IDisposable
{
    DecoderInfo Info { get; }

    /// <summary>The model as a module: parameters with Hugging Face's state-dict keys, train/eval mode, dtype.</summary>
    nn.Module Module { get; }

    /// <summary>
    /// Logits (B, T, V) in float32 for <paramref name="inputIds"/> (B, T) int64.
    /// <paramref name="attentionMask"/> (B, P + T) int64 over the cached and the new positions, 1 for real tokens and
    /// 0 for padding (left padding in batched generation); null: all real. Attention is causal on top of it.
    /// <paramref name="positionIds"/> (B, T) int64; null: P, P + 1, ... where P is the cache's length (with a mask,
    /// positions count real tokens only, as transformers does for left-padded batches).
    /// With <paramref name="cache"/>, the new keys and values are appended to it and attention sees the cached ones.
    /// </summary>
    Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null);

    /// <summary>
    /// The logits (B, V) of the last position only, otherwise as <see cref="Forward"/>: what generation needs of a prompt.
    /// Over a family with a separable head (<see cref="ILanguageModelHead"/>) the head's product runs for that position
    /// alone (for a 512-token prompt of a 0.5B model with a 152k vocabulary, a quarter of the prompt's arithmetic).
    /// </summary>
    Tensor ForwardLast(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        using var scope = NewDisposeScope();
        long last = inputIds.shape[1] - 1;
        if (this is ILanguageModelHead head)
        {
            var hidden = head.ForwardHidden(EmbedTokens(inputIds), attentionMask, positionIds, cache);    // (B, T, H)
            return head.Logits(hidden.select(1, last)).MoveToOuterDisposeScope();                          // (B, V)
        }
        return Forward(inputIds, attentionMask, positionIds, cache).select(1, last).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// As <see cref="Forward"/>, from input embeddings (B, T, H) instead of ids: prompt methods put their virtual tokens'
    /// embeddings in front of <see cref="EmbedTokens"/>' output. Positions and mask follow the same contract.
    /// </summary>
    /// <remarks>Every family implements it; the defaults keep test doubles compiling.</remarks>
    Tensor ForwardEmbeddings(Tensor inputsEmbeds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null) =>
        throw new NotSupportedException($"{GetType().Name} takes no input embeddings");

    /// <summary>The token embeddings (B, T, H) of ids (B, T), before any position or layer.</summary>
    Tensor EmbedTokens(Tensor inputIds) => throw new NotSupportedException($"{GetType().Name} exposes no token embeddings");

    /// <summary>The token embedding matrix (V, H).</summary>
    TorchSharp.Modules.Parameter WordEmbeddings => throw new NotSupportedException($"{GetType().Name} exposes no token embeddings");

    /// <summary>What parameter-efficient methods need to know of this model: sizes, Linear layers, names.</summary>
    IBackboneShape Shape => throw new NotSupportedException($"{GetType().Name} describes no backbone shape");

    /// <summary>An empty cache for this model (one key and one value tensor per layer).</summary>
    KeyValueCache NewCache();

    /// <summary>
    /// The model's Hugging Face <c>config.json</c> (with <c>model_type</c>), as <see cref="PretrainedDecoder.Save"/> writes
    /// it beside the weights. Every family implements it; the default only keeps test doubles and adapters compiling.
    /// </summary>
    JsonObject ToConfigJson() => throw new NotSupportedException($"{GetType().Name} has no Hugging Face config to save");
}

/// <summary>
/// Keys and values of the positions seen so far, per layer: (B, KV heads, P, head dim) each. Grows by
/// concatenation; <see cref="Length"/> is P.
/// </summary>
public sealed class KeyValueCache(int layers) : IDisposable
{
    readonly Tensor?[] keys = new Tensor?[layers];
    readonly Tensor?[] values = new Tensor?[layers];

    public int Layers => layers;

    /// <summary>Positions held (the same in every layer once a forward pass has run).</summary>
    public long Length => keys[0]?.shape[2] ?? 0;

    /// <summary>Layer <paramref name="layer"/>'s keys and values, (B, KV heads, P, D) each, or nulls before the first forward.</summary>
    public (Tensor? Keys, Tensor? Values) Layer(int layer) => (keys[layer], values[layer]);

    /// <summary>Appends this step's (B, KV heads, T, D) keys and values to layer <paramref name="layer"/> and returns all of them.</summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor newKeys, Tensor newValues)
    {
        var (oldKeys, oldValues) = (keys[layer], values[layer]);
        keys[layer] = (oldKeys is null ? newKeys.alias() : cat([oldKeys, newKeys], 2)).DetachFromDisposeScope();
        values[layer] = (oldValues is null ? newValues.alias() : cat([oldValues, newValues], 2)).DetachFromDisposeScope();
        oldKeys?.Dispose();
        oldValues?.Dispose();
        return (keys[layer]!, values[layer]!);
    }

    /// <summary>Keeps only the rows of <paramref name="batchIndex"/> (finished sequences dropped from a batch).</summary>
    public void Select(Tensor batchIndex)
    {
        for (int i = 0; i < layers; i++)
        {
            if (keys[i] is { } k) { keys[i] = k.index_select(0, batchIndex).DetachFromDisposeScope(); k.Dispose(); }
            if (values[i] is { } v) { values[i] = v.index_select(0, batchIndex).DetachFromDisposeScope(); v.Dispose(); }
        }
    }

    /// <summary>
    /// Appends the rows of <paramref name="other"/> after this cache's rows (continuous batching: a request joins a running
    /// batch between steps). The shorter side is left-padded with zeros to the longer length; callers mask those positions.
    /// <paramref name="other"/> is left as it was.
    /// </summary>
    public void Join(KeyValueCache other)
    {
        if (other.Layers != layers) throw new ArgumentException($"cannot join a cache of {other.Layers} layers to one of {layers}");
        long length = Math.Max(Length, other.Length);
        for (int i = 0; i < layers; i++)
        {
            keys[i] = JoinRows(keys[i], other.keys[i], length);
            values[i] = JoinRows(values[i], other.values[i], length);
        }
    }

    /// <summary>Drops the first <paramref name="positions"/> positions of every row (padding no row attends to any more).</summary>
    public void DropLeft(long positions)
    {
        if (positions <= 0) return;
        for (int i = 0; i < layers; i++)
        {
            if (keys[i] is { } k) { keys[i] = k.narrow(2, positions, k.shape[2] - positions).contiguous().DetachFromDisposeScope(); k.Dispose(); }
            if (values[i] is { } v) { values[i] = v.narrow(2, positions, v.shape[2] - positions).contiguous().DetachFromDisposeScope(); v.Dispose(); }
        }
    }

    static Tensor? JoinRows(Tensor? mine, Tensor? theirs, long length)
    {
        if (theirs is null) return mine;
        using var scope = NewDisposeScope();
        Tensor Padded(Tensor t) => t.shape[2] == length ? t : nn.functional.pad(t, [0, 0, length - t.shape[2], 0]); // (B, KV, L, D)
        var joined = mine is null ? theirs.clone() : cat([Padded(mine), Padded(theirs)], 0);
        mine?.Dispose();
        return joined.DetachFromDisposeScope();
    }

    /// <summary>Frees every layer's tensors; the cache is then empty (disposing twice is harmless).</summary>
    public void Dispose()
    {
        for (int i = 0; i < layers; i++)
        {
            keys[i]?.Dispose();
            values[i]?.Dispose();
            keys[i] = values[i] = null;
        }
    }
}
