using SharpTune.Models.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Generation;

/// <summary>
/// Continues prompts with a decoder language model: one forward pass over the (left-padded) prompts fills the
/// key/value cache, then one token per step. Sequences that finish leave the batch; the others go on.
/// </summary>
/// <param name="decode">Turns generated ids into text, for stop strings; null when no stop strings are used.</param>
public sealed class TextGenerator(ICausalLanguageModel model, GenerationOptions options, Func<IReadOnlyList<int>, string>? decode = null)
{
    readonly GenerationOptions options = options.Validate();

    /// <summary>Called with (prompt index, token id) for each generated token as it comes, for streaming.</summary>
    public Action<int, int>? OnToken { get; init; }

    /// <summary>The id that fills the left of shorter prompts (masked out; any valid id works).</summary>
    public int PadId { get; init; }

    public IReadOnlyList<GeneratedSequence> Generate(IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        if (prompts.Count == 0) return [];
        if (options.StopStrings.Count > 0 && decode is null) throw new ArgumentException("stop strings need a decoder");
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

        for (int step = 0; step < options.MaxNewTokens && active.Count > 0; step++)
        {
            Tensor next;
            using (var scope = NewDisposeScope())
            {
                var logits = model.Forward(input, mask, positions, cache);          // (B, T, V)
                var last = logits.select(1, logits.shape[1] - 1);                     // (B, V)
                next = sampler.Next(last, active.Select(i => (IReadOnlyCollection<int>)seen[i]).ToList()).MoveToOuterDisposeScope();
            }
            var tokens = next.data<long>().ToArray();
            next.Dispose();
            var keep = new List<long>();
            for (int row = 0; row < active.Count; row++)
            {
                int p = active[row], token = (int)tokens[row];
                if (options.StopTokens.Contains(token)) { finish[p] = FinishReason.StopToken; continue; }
                generated[p].Add(token);
                seen[p].Add(token);
                lengths[p]++;
                OnToken?.Invoke(p, token);
                if (options.StopStrings.Count > 0 && StopStringEnds(generated[p])) { finish[p] = FinishReason.StopString; continue; }
                if (lengths[p] >= context) { finish[p] = FinishReason.ContextFull; continue; }
                keep.Add(row);
            }
            if (keep.Count == 0) break;
            var keepRows = keep.Select(r => tokens[r]).ToArray();
            if (keep.Count < active.Count)
            {
                using var index = tensor(keep.ToArray());
                cache.Select(index);
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
        input.Dispose(); mask.Dispose(); positions.Dispose();
        if (wasTraining) module.train();
        return Enumerable.Range(0, batch).Select(p => new GeneratedSequence(
            finish[p] == FinishReason.StopString ? TrimStopString(generated[p]) : generated[p],
            finish[p] ?? FinishReason.Length)).ToList();
    }

    bool StopStringEnds(List<int> tokens)
    {
        string text = decode!(tokens);
        return options.StopStrings.Any(s => text.Contains(s, StringComparison.Ordinal));
    }

    /// <summary>The longest run of tokens whose text ends at or before the first stop string: the output stops before it.</summary>
    List<int> TrimStopString(List<int> tokens)
    {
        string text = decode!(tokens);
        int stopAt = options.StopStrings.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).Min();
        int keep = tokens.Count;
        while (keep > 0 && decode!(tokens.Take(keep).ToList()).Length > stopAt) keep--;
        return tokens.Take(keep).ToList();
    }
}
