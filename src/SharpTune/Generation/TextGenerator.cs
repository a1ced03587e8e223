using SharpTune.Models.Decoders;
using SharpTune.Tokenization.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Generation;

/// <summary>
/// Continues prompts with a decoder language model: one forward pass over the (left-padded) prompts fills the
/// key/value cache, then one token per step. Sequences that finish leave the batch; the others go on.
/// </summary>
public sealed class TextGenerator
{
    readonly ICausalLanguageModel model;
    readonly GenerationOptions options;
    readonly Func<IReadOnlyList<int>, string>? decode;
    readonly IDecoderTokenizer? tokenizer;
    /// <summary>Whether the model's Linear layers compute on stored blocks (the block kernels' threads, not libtorch's).</summary>
    readonly bool storedProducts;

    static bool StoredProducts(ICausalLanguageModel model) =>
        model is ILanguageModelHead { StoredHead: not null } || model.Module.modules().Any(m => m is Models.Quantized.StoredLinear);

    /// <param name="decode">
    /// Turns generated ids into text, for stop strings; null when no stop strings are used. It is given the whole output
    /// after each token; the <see cref="IDecoderTokenizer"/> overload decodes incrementally instead.
    /// </param>
    public TextGenerator(ICausalLanguageModel model, GenerationOptions options, Func<IReadOnlyList<int>, string>? decode = null)
    {
        this.model = model;
        storedProducts = StoredProducts(model);
        this.options = options.Validate();
        this.decode = decode;
    }

    /// <param name="tokenizer">Decodes the output for stop strings, one token at a time (a <see cref="DecodeStream"/> per sequence).</param>
    public TextGenerator(ICausalLanguageModel model, GenerationOptions options, IDecoderTokenizer tokenizer)
    {
        this.model = model;
        storedProducts = StoredProducts(model);
        this.options = options.Validate();
        this.tokenizer = tokenizer;
    }

    /// <summary>Called with (prompt index, token id) for each generated token as it comes, for streaming.</summary>
    public Action<int, int>? OnToken { get; init; }

    /// <summary>The id that fills the left of shorter prompts (masked out; any valid id works).</summary>
    public int PadId { get; init; }

    /// <summary>
    /// Whether decode steps after the prompt run on the model's <see cref="IStepDecoding"/> step decoder when it offers
    /// one (the default); false computes every step with <see cref="ICausalLanguageModel.Forward"/>.
    /// </summary>
    public bool UseStepDecoder { get; init; } = true;

    /// <summary>Whether the last <see cref="Generate"/> decoded on a step decoder.</summary>
    public bool LastUsedStepDecoder { get; private set; }

    /// <summary>How long the last <see cref="Generate"/> took, prompt and generation apart (what llama.cpp prints).</summary>
    public GenerationTiming LastTiming { get; private set; } = GenerationTiming.Zero;

    public IReadOnlyList<GeneratedSequence> Generate(IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        if (prompts.Count == 0) return [];
        if (options.StopStrings.Count > 0 && decode is null && tokenizer is null) throw new ArgumentException("stop strings need a decoder");
        int context = model.Info.ContextLength;
        foreach (var (prompt, i) in prompts.Select((p, i) => (p, i)))
        {
            if (prompt.Count == 0) throw new ArgumentException($"prompt {i + 1} is empty: give at least one token (the model's BOS token counts)");
            if (prompt.Count >= context) throw new ArgumentException($"prompt {i + 1} has {prompt.Count} tokens; the model's context is {context}");
        }

        var module = model.Module;
        bool wasTraining = module.training;
        module.eval();
        using var noGrad = no_grad();
        using var sampler = new TokenSampler(options);
        using var cache = model.NewCache();

        int batch = prompts.Count, longest = prompts.Max(p => p.Count);
        var generated = prompts.Select(_ => new List<int>()).ToArray();
        var seen = prompts.Select(p => new HashSet<int>(p)).ToArray();
        var finish = new FinishReason?[batch];
        var active = Enumerable.Range(0, batch).ToList();                        // prompt index of each batch row
        var watches = options.StopStrings.Count == 0 ? null : prompts.Select(_ => new StopStringWatch(options.StopStrings)).ToArray();
        var streams = watches is null ? null : prompts.Select(_ => tokenizer?.CreateDecodeStream()).ToArray();

        // Prefill: (B, L) ids left-padded, mask 0 on the padding, positions counting real tokens only.
        var ids = Enumerable.Repeat((long)PadId, batch * longest).ToArray();
        var maskValues = new long[batch * longest];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < prompts[b].Count; t++)
            {
                int at = b * longest + longest - prompts[b].Count + t;
                ids[at] = prompts[b][t];
                maskValues[at] = 1;
            }
        var mask = tensor(maskValues, [batch, longest]);
        var positions = (mask.cumsum(1) - 1).clamp_min(0);
        var input = tensor(ids, [batch, longest]);
        var lengths = prompts.Select(p => p.Count).ToArray();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        double promptSeconds = 0;
        int sampled = 0, decoded = 0;

        // Decoding over blocks runs its products on the kernels' own threads; libtorch's OpenMP threads, spinning between the
        // step's small operations, would take the same two cores from them (measured: 7.2 against 19.4 generated tokens/s at
        // Q4_K_M on 2 cores). So after the prompt, libtorch computes on one thread; its count is restored at the end.
        int torchThreads = get_num_threads();
        bool narrowed = false;
        // A step decoder (where the model has one) takes the decoding over: from the prompt on when the prompts are short
        // (computed on it a chunk of tokens at a time), else from the first generated token, with the prompts' keys and
        // values moved over from the forward pass's cache.
        var stepper = UseStepDecoder ? (model as IStepDecoding)?.CreateStepDecoder() : null;
        bool prefillOnSteps = stepper is not null && longest <= stepper.PrefillLimit;
        int capacity = Math.Min(context, longest + options.MaxNewTokens);
        LastUsedStepDecoder = stepper is not null;
        try
        {
        for (int step = 0; step < options.MaxNewTokens && active.Count > 0; step++)
        {
            if (step == 1 && stepper is { Rows: 0 })
            {
                using (var promptMask = mask.narrow(1, 0, cache.Length))                  // the mask has grown by this step's token
                    stepper.Join(cache, promptMask, capacity);
                cache.Dispose();
            }
            if (!narrowed && torchThreads > 1 && (step == 0 && prefillOnSteps || step == 1 && (storedProducts || stepper is not null)))
            {
                set_num_threads(1);
                narrowed = true;
            }
            Tensor next;
            using (var scope = NewDisposeScope())
            {
                Tensor last;                                                             // (B, V)
                if (step == 0 && prefillOnSteps) last = stepper!.Prefill(prompts, capacity);
                else if (stepper is { Rows: > 0 }) last = stepper.Step(input.data<long>().ToArray());
                else last = model.ForwardLast(input, mask, positions, cache);         // the prompt's head runs for its last position only
                next = sampler.Next(last, active.Select(i => (IReadOnlyCollection<int>)seen[i]).ToList()).MoveToOuterDisposeScope();
            }
            var tokens = next.data<long>().ToArray();
            next.Dispose();
            sampled += tokens.Length;
            if (step == 0) promptSeconds = clock.Elapsed.TotalSeconds;
            else decoded += tokens.Length;
            var keep = new List<long>();
            for (int row = 0; row < active.Count; row++)
            {
                int p = active[row], token = (int)tokens[row];
                if (options.StopTokens.Contains(token)) { finish[p] = FinishReason.StopToken; continue; }
                generated[p].Add(token);
                seen[p].Add(token);
                lengths[p]++;
                OnToken?.Invoke(p, token);
                if (watches is not null && (streams![p] is { } stream ? watches[p].Append(stream.Next(token)) : watches[p].Replace(decode!(generated[p]))))
                {
                    finish[p] = FinishReason.StopString;
                    continue;
                }
                if (lengths[p] >= context) { finish[p] = FinishReason.ContextFull; continue; }
                keep.Add(row);
            }
            if (keep.Count == 0) break;
            var keepRows = keep.Select(r => tokens[r]).ToArray();
            if (keep.Count < active.Count)
            {
                using var index = tensor(keep.ToArray());
                if (stepper is { Rows: > 0 }) stepper.Keep(keep.Select(r => (int)r).ToList());
                else cache.Select(index);
                var keptMask = mask.index_select(0, index);
                var keptPositions = positions.index_select(0, index);
                mask.Dispose(); positions.Dispose();
                (mask, positions) = (keptMask, keptPositions);
                active = keep.Select(r => active[(int)r]).ToList();
            }
            input.Dispose();
            input = tensor(keepRows, [keep.Count, 1]);
            var nextPositions = positions.select(1, positions.shape[1] - 1).unsqueeze(1) + 1;  // (B, 1)
            var grownMask = cat([mask, ones(keep.Count, 1, ScalarType.Int64)], 1);
            positions.Dispose(); mask.Dispose();
            (positions, mask) = (nextPositions, grownMask);
        }
        }
        finally
        {
            stepper?.Dispose();
            if (narrowed) set_num_threads(torchThreads);
        }
        input.Dispose(); mask.Dispose(); positions.Dispose();
        if (wasTraining) module.train();
        // Each pass's time ends when its tokens are read back (the data<long>() above waits for the forward pass).
        LastTiming = new GenerationTiming(prompts.Sum(p => p.Count), promptSeconds, sampled, decoded, clock.Elapsed.TotalSeconds - promptSeconds);
        return Enumerable.Range(0, batch).Select(p => new GeneratedSequence(
            finish[p] == FinishReason.StopString ? generated[p].Take(watches![p].TokensBeforeStop).ToList() : generated[p],
            finish[p] ?? FinishReason.Length)).ToList();
    }
}
