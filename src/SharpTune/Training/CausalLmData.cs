using SharpTune.Data;
using SharpTune.Tokenization.ChatTemplates;
using SharpTune.Tokenization.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// One tokenized language-model example: ids and, per position, the token it is trained to produce there (the
/// label of position t is predicted from positions before t; -100: no loss). Packed rows hold several examples
/// back to back; <see cref="SegmentStarts"/> says where each begins.
/// </summary>
public sealed record CausalLmExample(long[] InputIds, long[] Labels, string Source, int[]? SegmentStarts = null)
{
    public int Length => InputIds.Length;

    /// <summary>Positions that count in the loss (their label is not -100; the first position never counts).</summary>
    public int Targets => Labels.Skip(1).Count(l => l != -100);
}

/// <summary>What encoding did beside the examples: counted, so nothing is dropped silently.</summary>
public sealed record CausalLmEncoding(IReadOnlyList<CausalLmExample> Examples, int Truncated, IReadOnlyList<string> Dropped);

/// <summary>
/// Tokenizes language-model data with the model's rules (TRL and LLaMA-Factory conventions): raw text trains on every
/// token; prompt + completion on the completion only (unless <c>trainOnPrompt</c>); a conversation, rendered with the
/// model's chat template, on the assistant turns only. Every example ends with the end-of-sequence token, so the model
/// learns to stop. Examples longer than <c>maxLength</c> are cut and counted; one left with nothing to learn is dropped
/// and listed.
/// </summary>
public sealed class CausalLmEncoder(IDecoderTokenizer tokenizer, ChatTemplate? template, int maxLength, bool trainOnPrompt)
{
    /// <summary>Whether a prompt/completion or text example ends with the end-of-sequence token (training: yes; scoring a continuation as lm-evaluation-harness does: no).</summary>
    public bool EndWithEos { get; init; } = true;

    public CausalLmEncoding Encode(IReadOnlyList<LanguageModelExample> examples)
    {
        var encoded = new List<CausalLmExample>(examples.Count);
        var dropped = new List<string>();
        int truncated = 0;
        foreach (var example in examples)
        {
            var (ids, targets) = Tokens(example);
            if (ids.Count > maxLength)
            {
                truncated++;
                ids.RemoveRange(maxLength, ids.Count - maxLength);
                targets.RemoveRange(maxLength, targets.Count - maxLength);
            }
            var labels = ids.Select((id, i) => targets[i] ? id : -100L).ToArray();
            var result = new CausalLmExample(ids.ToArray(), labels, example.Source);
            if (result.Length < 2 || result.Targets == 0)
                dropped.Add($"{example.Source}: no {(example.Messages is null ? "completion" : "assistant")} tokens within --max-length {maxLength}");
            else
                encoded.Add(result);
        }
        return new CausalLmEncoding(encoded, truncated, dropped);
    }

    (List<long> Ids, List<bool> Targets) Tokens(LanguageModelExample example)
    {
        if (example.Text is { } text) return Whole(Ids(text, bos: true).Concat(Eos()).ToList(), true);
        if (example.Prompt is { } prompt)
        {
            var promptIds = Ids(prompt, bos: true).ToList();
            var ids = promptIds.Concat(Ids(example.Completion!, bos: false)).Concat(Eos()).ToList();
            int promptLength = promptIds.Count;
            return (ids, ids.Select((_, i) => trainOnPrompt || i >= promptLength).ToList());
        }
        return Conversation(example.Messages!, example.TargetsFrom, example.Source);
    }

    /// <summary>
    /// The whole conversation rendered once; each assistant turn's tokens are found by rendering the conversation up to
    /// it (with the generation prompt) and up to its end, so the targets are exactly what the model would generate.
    /// </summary>
    /// <param name="targetsFrom">Assistant turns before this index are context, not targets.</param>
    (List<long> Ids, List<bool> Targets) Conversation(IReadOnlyList<Turn> turns, int targetsFrom, string source)
    {
        var messages = turns.Select(t => new ChatMessage(t.Role, t.Content)).ToList();
        if (template is null)
        {
            // No template: the plain format a base model reads ("User: ...\nAssistant: ..."), assistant turns trained.
            var plainIds = new List<long>();
            var plainTargets = new List<bool>();
            bool first = true;
            for (int k = 0; k < turns.Count; k++)
            {
                var turn = turns[k];
                var part = Ids($"{char.ToUpperInvariant(turn.Role[0])}{turn.Role[1..]}: {turn.Content}\n", bos: first).ToList();
                if (turn.Role == "assistant") part.AddRange(Eos());
                plainIds.AddRange(part);
                plainTargets.AddRange(part.Select(_ => turn.Role == "assistant" && k >= targetsFrom));
                first = false;
            }
            return (plainIds, plainTargets);
        }
        var ids = Rendered(messages, false, source);
        var targets = new bool[ids.Count];
        for (int k = 0; k < messages.Count; k++)
        {
            if (messages[k].Role != "assistant" || k < targetsFrom) continue;
            int start = CommonPrefix(ids, Rendered(messages.Take(k).ToList(), true, source));
            int end = CommonPrefix(ids, Rendered(messages.Take(k + 1).ToList(), false, source));
            for (int i = start; i < end; i++) targets[i] = true;
        }
        // The template ends each turn with its own marker (<|im_end|>, <|eot_id|>), inside the assistant's span: it is learnt.
        return (ids, targets.ToList());
    }

    List<long> Rendered(IReadOnlyList<ChatMessage> messages, bool generationPrompt, string source)
    {
        string? Token(int? id) => id is { } i ? tokenizer.IdToToken(i) : null;
        string text;
        try
        {
            text = template!.Render(messages, generationPrompt, Token(tokenizer.BosId), Token(tokenizer.EosId));
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException)
        {
            throw new DataFormatException(source, $"the chat template could not render this conversation: {e.Message}");
        }
        // Templates write BOS themselves where the model wants it (Llama 3); add it only when they do not.
        var ids = tokenizer.Encode(text, addSpecialTokens: false, parseSpecial: true).Select(i => (long)i).ToList();
        if (tokenizer.AddBos && tokenizer.BosId is { } bos && (ids.Count == 0 || ids[0] != bos)) ids.Insert(0, bos);
        return ids;
    }

    static int CommonPrefix(List<long> a, List<long> b)
    {
        int n = Math.Min(a.Count, b.Count), i = 0;
        while (i < n && a[i] == b[i]) i++;
        return i;
    }

    IEnumerable<long> Ids(string text, bool bos)
    {
        var ids = tokenizer.Encode(text, addSpecialTokens: false).Select(i => (long)i);
        return bos && tokenizer.AddBos && tokenizer.BosId is { } b ? ids.Prepend(b) : ids;
    }

    IEnumerable<long> Eos() => EndWithEos && tokenizer.EosId is { } eos ? [eos] : [];

    static (List<long>, List<bool>) Whole(List<long> ids, bool target) => (ids, ids.Select(_ => target).ToList());

    /// <summary>
    /// Packs examples into rows of at most <paramref name="maxLength"/> tokens, in order (first fit into the current row):
    /// attention stays inside each example and positions restart, so a packed row trains exactly as its examples would alone.
    /// </summary>
    public static IReadOnlyList<CausalLmExample> Pack(IReadOnlyList<CausalLmExample> examples, int maxLength)
    {
        var rows = new List<CausalLmExample>();
        var ids = new List<long>();
        var labels = new List<long>();
        var starts = new List<int>();
        string? source = null;
        void Flush()
        {
            if (ids.Count == 0) return;
            rows.Add(new CausalLmExample(ids.ToArray(), labels.ToArray(), source!, starts.ToArray()));
            ids.Clear(); labels.Clear(); starts.Clear();
        }
        foreach (var e in examples)
        {
            if (ids.Count + e.Length > maxLength) Flush();
            if (ids.Count == 0) source = e.Source;
            starts.Add(ids.Count);
            ids.AddRange(e.InputIds);
            labels.AddRange(e.Labels);
        }
        Flush();
        return rows;
    }
}

/// <summary>Batches of language-model examples as tensors.</summary>
public static class CausalLmCollator
{
    /// <summary>
    /// Right-padded ids (B, T), the attention mask and labels (-100 on padding). Without packing the mask is (B, T); a
    /// batch with packed rows gets a (B, T, T) mask that keeps each example to itself (causal within it) and positions
    /// (B, T) restarting at every example.
    /// </summary>
    public static (Tensor Ids, Tensor Mask, Tensor Labels, Tensor? Positions) Collate(IReadOnlyList<CausalLmExample> batch, long padId)
    {
        int size = batch.Count, length = batch.Max(e => e.Length);
        var ids = new long[size * length];
        var labels = new long[size * length];
        Array.Fill(ids, padId);
        Array.Fill(labels, -100L);
        bool packed = batch.Any(e => e.SegmentStarts is not null);
        var mask = new long[packed ? size * length * length : size * length];
        var positions = packed ? new long[size * length] : null;
        for (int b = 0; b < size; b++)
        {
            var e = batch[b];
            Array.Copy(e.InputIds, 0, ids, b * length, e.Length);
            Array.Copy(e.Labels, 0, labels, b * length, e.Length);
            if (!packed)
            {
                Array.Fill(mask, 1L, b * length, e.Length);
                continue;
            }
            var starts = e.SegmentStarts ?? [0];
            for (int s = 0; s < starts.Length; s++)
            {
                int from = starts[s], to = s + 1 < starts.Length ? starts[s + 1] : e.Length;
                for (int q = from; q < to; q++)
                {
                    positions![b * length + q] = q - from;
                    for (int k = from; k <= q; k++) mask[(b * length + q) * length + k] = 1;
                }
                // The label at a segment's first position would be predicted from the previous example: no loss there.
                labels[b * length + from] = -100;
            }
        }
        return (tensor(ids, [size, length]), packed ? tensor(mask, [size, length, length]) : tensor(mask, [size, length]),
            tensor(labels, [size, length]), positions is null ? null : tensor(positions, [size, length]));
    }
}
