namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// The BPE merge loop shared by both tokenizer kinds, as llama.cpp's <c>llm_tokenizer_bpe_session</c> and
/// <c>llm_tokenizer_spm_session</c> run it: a queue of adjacent pairs ordered by priority (lower first), ties
/// broken by the leftmost pair; pairs made stale by an earlier merge are skipped when popped.
/// Byte-level BPE ranks pairs by their line in the merges list; SentencePiece BPE by the score of the merged
/// piece (negated). Written here because Microsoft.ML.Tokenizers' BpeTokenizer has neither score-ordered merges,
/// byte fallback nor Llama 3's ignore_merges.
/// </summary>
static class BpeMerger
{
    /// <summary>Priority of merging <paramref name="left"/> with <paramref name="right"/> (lower first), or false when they never merge.</summary>
    public delegate bool TryGetPriority(string left, string right, out double priority);

    /// <summary>
    /// Merges the symbols of <paramref name="word"/> (one per UTF-16 char, or per code point when
    /// <paramref name="byCodePoint"/>) and returns the final symbols.
    /// </summary>
    public static List<string> Merge(string word, bool byCodePoint, TryGetPriority tryGetPriority)
    {
        var start = new List<int>(word.Length);
        var length = new List<int>(word.Length);
        for (int i = 0; i < word.Length;)
        {
            int n = byCodePoint && char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            start.Add(i);
            length.Add(n);
            i += n;
        }
        int count = start.Count;
        var prev = new int[count];
        var next = new int[count];
        for (int i = 0; i < count; i++) { prev[i] = i - 1; next[i] = i + 1 < count ? i + 1 : -1; }

        var queue = new PriorityQueue<(int Left, int Right, int Size), (double Priority, int Left)>();
        void TryAdd(int left, int right)
        {
            if (left < 0 || right < 0) return;
            var a = word.Substring(start[left], length[left]);
            var b = word.Substring(start[right], length[right]);
            if (tryGetPriority(a, b, out var priority))
                queue.Enqueue((left, right, length[left] + length[right]), (priority, left));
        }

        for (int i = 1; i < count; i++) TryAdd(i - 1, i);
        while (queue.TryDequeue(out var pair, out _))
        {
            var (l, r, size) = pair;
            if (length[l] == 0 || length[r] == 0 || next[l] != r || length[l] + length[r] != size) continue;
            length[l] = size;
            length[r] = 0;
            next[l] = next[r];
            if (next[r] >= 0) prev[next[r]] = l;
            TryAdd(prev[l], l);
            TryAdd(l, next[l]);
        }

        var symbols = new List<string>();
        for (int i = count > 0 ? 0 : -1; i >= 0; i = next[i]) symbols.Add(word.Substring(start[i], length[i]));
        return symbols;
    }
}
