using SharpTune.Models.Decoders;
using SharpTune.Tokenization.Decoders;

namespace SharpTune.Generation;

/// <summary>
/// One prompt to continue through a <see cref="ContinuousBatcher"/>: its model (a base or an adapter over it), options
/// of its own (sampling, seed, stops), a callback per token for streaming, and a token that stops it early.
/// </summary>
public sealed class DecodeRequest
{
    public required ICausalLanguageModel Model { get; init; }

    /// <summary>The prompt's token ids (special tokens included as the caller wants them).</summary>
    public required IReadOnlyList<int> Prompt { get; init; }

    public required GenerationOptions Options { get; init; }

    /// <summary>Decodes the output incrementally for stop strings; needed only when <see cref="GenerationOptions.StopStrings"/> has some.</summary>
    public IDecoderTokenizer? Tokenizer { get; init; }

    /// <summary>Called on the batcher's thread with each generated token (stop tokens excluded) as it comes.</summary>
    public Action<int>? OnToken { get; init; }

    /// <summary>Cancelling (a client that went away) takes the request out of the batch before the next step.</summary>
    public CancellationToken Cancellation { get; init; }

    /// <summary>
    /// The request decodes in a batch of its own: prompt methods put their virtual tokens in front of the cache, which a
    /// left-padded shared cache would misplace.
    /// </summary>
    public bool RunsAlone { get; init; }

    internal TaskCompletionSource<DecodeResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>What a request produced: the sequence (stop token excluded, cut before a stop string) and its prompt's length.</summary>
public sealed record DecodeResult(GeneratedSequence Sequence, int PromptTokens);

/// <summary>The batcher's queue is full; the caller should try again later (HTTP 429).</summary>
public sealed class QueueFullException(int capacity) : InvalidOperationException($"too many requests waiting ({capacity}); try again later")
{
    public int Capacity { get; } = capacity;
}
