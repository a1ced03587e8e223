using System.Collections.Concurrent;
using System.Text;

namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM), following HF's BPE model with ByteLevel pre-tokenizer and
/// decoder and llama.cpp's <c>llm_tokenizer_bpe</c>: split by the model's regexes, map each word's UTF-8 bytes
/// to <see cref="ByteLevelAlphabet"/> characters, merge pairs by merges-list rank. With <c>ignore_merges</c>
/// (Llama 3) a word that is itself a token is taken whole.
/// </summary>
public sealed class ByteLevelBpeTokenizer : DecoderTokenizer
{
    const int MaxCachedWordLength = 64, MaxCacheEntries = 200_000;

    readonly ByteLevelPreTokenizer preTokenizer;
    readonly Dictionary<(string, string), int> ranks;
    readonly ConcurrentDictionary<string, int[]> cache = new(StringComparer.Ordinal);
    readonly BpeMerger.TryGetPriority tryGetRank;

    internal ByteLevelBpeTokenizer(
        DecoderTokenizerSetup setup, IReadOnlyList<(string Left, string Right)> merges, ByteLevelPreTokenizer preTokenizer,
        bool ignoreMerges, bool addPrefixSpace, bool normalizeNfc) : base(setup)
    {
        this.preTokenizer = preTokenizer;
        IgnoreMerges = ignoreMerges;
        AddPrefixSpace = addPrefixSpace;
        NormalizeNfc = normalizeNfc;
        ranks = new Dictionary<(string, string), int>(merges.Count);
        for (int i = 0; i < merges.Count; i++) ranks.TryAdd(merges[i], i);
        tryGetRank = (string left, string right, out double priority) =>
        {
            bool found = ranks.TryGetValue((left, right), out var rank);
            priority = rank;
            return found;
        };
    }

    public ByteLevelPreTokenizer PreTokenizer => preTokenizer;
    public bool IgnoreMerges { get; }
    public bool AddPrefixSpace { get; }
    public bool NormalizeNfc { get; }

    private protected override void EncodeText(string text, bool atTextStart, List<int> output)
    {
        if (NormalizeNfc) text = text.Normalize(NormalizationForm.FormC);
        if (AddPrefixSpace && !text.StartsWith(' ')) text = " " + text;
        foreach (var word in preTokenizer.Split(text)) EncodeWord(ByteLevelAlphabet.Encode(word), output);
    }

    void EncodeWord(string word, List<int> output)
    {
        if (IgnoreMerges && VocabId(word) is int whole) { output.Add(whole); return; }
        if (cache.TryGetValue(word, out var cached)) { output.AddRange(cached); return; }

        var ids = new List<int>();
        foreach (var symbol in BpeMerger.Merge(word, byCodePoint: false, tryGetRank))
        {
            if (VocabId(symbol) is int id) { ids.Add(id); continue; }
            // A merge whose result is missing from the vocabulary: fall back to the single byte characters.
            foreach (var c in symbol)
                ids.Add(VocabId(c.ToString()) ?? UnkId
                    ?? throw new InvalidDataException($"{Source}: the byte-level alphabet character '{c}' is missing from the vocabulary."));
        }
        if (word.Length <= MaxCachedWordLength && cache.Count < MaxCacheEntries) cache.TryAdd(word, ids.ToArray());
        output.AddRange(ids);
    }

    private protected override void AppendTokenBytes(int id, string token, List<byte> output) =>
        ByteLevelAlphabet.AppendBytes(token, output);
}
