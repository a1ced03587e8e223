using System.Globalization;
using System.Text;

namespace SharpTune.Tokenization.Decoders;

/// <summary>Where the SentencePiece space marker ▁ is prepended (HF Metaspace <c>prepend_scheme</c>).</summary>
public enum SpacePrefix
{
    /// <summary>Before every text segment (HF legacy Prepend normalizer, llama.cpp <c>add_space_prefix</c>).</summary>
    Always,
    /// <summary>Only before the segment that starts the input.</summary>
    First,
    Never,
}

/// <summary>
/// SentencePiece BPE with byte fallback (Llama 2, TinyLlama), as llama.cpp's <c>llm_tokenizer_spm</c> and HF's
/// BPE with <c>byte_fallback</c>: spaces become ▁, a ▁ is prepended, code points are merged by the score of the
/// merged piece (GGUF scores) or by merges-list rank (tokenizer.json); characters left outside the vocabulary
/// become &lt;0xNN&gt; byte tokens. Decoding turns ▁ into spaces, assembles byte tokens into UTF-8 and drops the
/// prepended space.
/// </summary>
public sealed class SentencePieceBpeTokenizer : DecoderTokenizer
{
    const char SpaceMarker = '\u2581';

    readonly int?[] byteTokenIds = new int?[256];
    readonly int[] byteValue;
    readonly BpeMerger.TryGetPriority tryGetPriority;
    readonly bool byteFallback;
    readonly bool splitOnMarker;

    /// <param name="scores">Piece scores (GGUF); used when <paramref name="merges"/> is null.</param>
    /// <param name="byteTokens">Which ids are byte tokens; null: every token spelled &lt;0xNN&gt;.</param>
    internal SentencePieceBpeTokenizer(
        DecoderTokenizerSetup setup, float[]? scores, IReadOnlyList<(string Left, string Right)>? merges,
        bool[]? byteTokens, bool byteFallback, SpacePrefix spacePrefix, bool splitOnMarker) : base(setup)
    {
        SpacePrefix = spacePrefix;
        this.byteFallback = byteFallback;
        this.splitOnMarker = splitOnMarker;
        byteValue = new int[setup.Tokens.Length];
        for (int id = 0; id < setup.Tokens.Length; id++)
        {
            byteValue[id] = -1;
            if (byteTokens is not null && !byteTokens[id]) continue;
            if (ParseByteToken(setup.Tokens[id]) is byte b) { byteValue[id] = b; byteTokenIds[b] ??= id; }
        }

        if (merges is not null)
        {
            var ranks = new Dictionary<(string, string), int>(merges.Count);
            for (int i = 0; i < merges.Count; i++) ranks.TryAdd(merges[i], i);
            tryGetPriority = (string left, string right, out double priority) =>
            {
                bool found = ranks.TryGetValue((left, right), out var rank);
                priority = rank;
                return found;
            };
        }
        else
        {
            var pieceScores = scores ?? throw new ArgumentNullException(nameof(scores), "scores or merges are required");
            tryGetPriority = (string left, string right, out double priority) =>
            {
                priority = 0;
                if (VocabId(left + right) is not int id || id >= pieceScores.Length) return false;
                priority = -pieceScores[id];
                return true;
            };
        }
    }

    public SpacePrefix SpacePrefix { get; }

    internal override bool StripsLeadingSpace => SpacePrefix != SpacePrefix.Never;

    private protected override void EncodeText(string text, bool atTextStart, List<int> output)
    {
        bool prepend = SpacePrefix == SpacePrefix.Always || SpacePrefix == SpacePrefix.First && atTextStart;
        var escaped = (prepend ? SpaceMarker.ToString() : "") + text.Replace(' ', SpaceMarker);
        foreach (var word in splitOnMarker ? SplitBeforeMarkers(escaped) : [escaped])
            foreach (var symbol in BpeMerger.Merge(word, byCodePoint: true, tryGetPriority))
                AppendSymbol(symbol, output);
    }

    void AppendSymbol(string symbol, List<int> output)
    {
        if (VocabId(symbol) is int id) { output.Add(id); return; }
        if (byteFallback)
        {
            var bytes = Encoding.UTF8.GetBytes(symbol);
            if (bytes.All(b => byteTokenIds[b] is not null))
            {
                foreach (var b in bytes) output.Add(byteTokenIds[b]!.Value);
                return;
            }
        }
        output.Add(UnkId ?? throw new InvalidDataException(
            $"{Source}: '{symbol}' is not in the vocabulary and there is no byte token or unk token to stand for it."));
    }

    static IEnumerable<string> SplitBeforeMarkers(string text)
    {
        int start = 0;
        for (int i = 1; i < text.Length; i++)
            if (text[i] == SpaceMarker) { yield return text[start..i]; start = i; }
        if (text.Length > 0) yield return text[start..];
    }

    private protected override void AppendTokenBytes(int id, string token, List<byte> output)
    {
        if (byteValue[id] >= 0) output.Add((byte)byteValue[id]);
        else output.AddRange(Encoding.UTF8.GetBytes(token.Replace(SpaceMarker, ' ')));
    }

    static byte? ParseByteToken(string token) =>
        token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
        && byte.TryParse(token.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var b)
            ? b : null;
}
