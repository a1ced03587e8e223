using System.Text;

namespace SharpTune.Tokenization.Decoders;

/// <summary>An added token (HF <c>added_tokens</c>; GGUF control or user-defined token).</summary>
/// <param name="Special">Special tokens match in text only with <c>parseSpecial</c> and are skipped by <c>skipSpecialTokens</c>.</param>
public readonly record struct AddedToken(string Content, int Id, bool Special);

/// <summary>What every decoder tokenizer is built from, besides its model (merges or scores).</summary>
/// <param name="Tokens">Token strings indexed by id (added tokens included).</param>
/// <param name="Source">File or description named in error messages.</param>
sealed record DecoderTokenizerSetup(
    string[] Tokens,
    IReadOnlyList<AddedToken> AddedTokens,
    int? Bos, int? Eos, int? Pad, int? Unk,
    bool AddBos, bool AddEos,
    IReadOnlyCollection<int> ExtraStopIds,
    string? ChatTemplate,
    string Source);

/// <summary>
/// Shared part of the decoder tokenizers: added-token splitting, the BOS/EOS rule, stop ids and decoding through
/// bytes. Subclasses encode raw text segments and give each ordinary token's bytes.
/// </summary>
public abstract class DecoderTokenizer : IDecoderTokenizer
{
    /// <summary>Token texts that end a turn or a document (llama.cpp's end-of-generation list).</summary>
    static readonly string[] EndOfGenerationTokens =
        ["<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|end|>", "<end_of_turn>", "<EOT>"];

    readonly string[] tokens;
    readonly Dictionary<string, int> tokenToId;
    readonly bool[] literal;
    readonly bool[] special;
    readonly byte[]?[] tokenBytes;
    readonly AddedTokenMatcher matcher;

    private protected DecoderTokenizer(DecoderTokenizerSetup setup)
    {
        Source = setup.Source;
        tokens = setup.Tokens;
        tokenToId = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++) if (tokens[i].Length > 0) tokenToId.TryAdd(tokens[i], i);
        literal = new bool[tokens.Length];
        special = new bool[tokens.Length];
        tokenBytes = new byte[tokens.Length][];
        foreach (var added in setup.AddedTokens)
        {
            SetupId(added.Id, $"added token '{added.Content}' id");
            literal[added.Id] = true;
            special[added.Id] |= added.Special;
            tokenToId[added.Content] = added.Id;
        }
        matcher = new AddedTokenMatcher(setup.AddedTokens.Select(t => (t.Content, t.Id, t.Special)));

        BosId = SetupId(setup.Bos, "bos token id");
        EosId = SetupId(setup.Eos, "eos token id");
        PadId = SetupId(setup.Pad, "pad token id");
        UnkId = SetupId(setup.Unk, "unk token id");
        if (setup.AddBos && BosId is null) throw new InvalidDataException($"{Source}: add_bos_token is true but no bos token is set.");
        if (setup.AddEos && EosId is null) throw new InvalidDataException($"{Source}: add_eos_token is true but no eos token is set.");
        AddBos = setup.AddBos;
        AddEos = setup.AddEos;
        ChatTemplate = setup.ChatTemplate;

        var stops = new HashSet<int>();
        if (EosId is int eos) stops.Add(eos);
        foreach (var id in setup.ExtraStopIds) if (SetupId(id, "stop token id") is int s) stops.Add(s);
        foreach (var text in EndOfGenerationTokens) if (tokenToId.TryGetValue(text, out var id)) stops.Add(id);
        StopIds = stops;
    }

    /// <summary>The file or description this tokenizer was loaded from.</summary>
    public string Source { get; }

    public int VocabSize => tokens.Length;
    public int? BosId { get; }
    public int? EosId { get; }
    public int? PadId { get; }
    public int? UnkId { get; }
    public bool AddBos { get; }
    public bool AddEos { get; }
    public IReadOnlySet<int> StopIds { get; }
    public string? ChatTemplate { get; }

    /// <summary>Whether decoding drops the one space that encoding prepended (SentencePiece).</summary>
    internal virtual bool StripsLeadingSpace => false;

    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2);
        if (addSpecialTokens && AddBos) ids.Add(BosId!.Value);
        if (matcher.IsEmpty) { if (text.Length > 0) EncodeText(text, atTextStart: true, ids); }
        else
        {
            foreach (var part in matcher.Split(text, parseSpecial))
            {
                if (part.Id is int id) ids.Add(id);
                else EncodeText(part.Text!, part.Offset == 0, ids);
            }
        }
        if (addSpecialTokens && AddEos) ids.Add(EosId!.Value);
        return ids;
    }

    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        foreach (var id in ids) AppendDecodedBytes(id, skipSpecialTokens, bytes);
        // Same result as a DecodeStream fed every id, in one UTF-8 pass (invalid bytes become U+FFFD).
        var text = Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
        return StripsLeadingSpace && text.StartsWith(' ') ? text[1..] : text;
    }

    public DecodeStream CreateDecodeStream(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    public string IdToToken(int id) => tokens[CheckId(id, "token id")!.Value];

    public int? TokenToId(string token) => tokenToId.TryGetValue(token, out var id) ? id : null;

    public bool IsSpecial(int id) => special[CheckId(id, "token id")!.Value];

    /// <summary>Tokens of one raw text segment (no added tokens inside); <paramref name="atTextStart"/>: it begins the input.</summary>
    private protected abstract void EncodeText(string text, bool atTextStart, List<int> output);

    /// <summary>Bytes of an ordinary (not added) token.</summary>
    private protected abstract void AppendTokenBytes(int id, string token, List<byte> output);

    internal void AppendDecodedBytes(int id, bool skipSpecialTokens, List<byte> output)
    {
        CheckId(id, "token id");
        if (special[id] && skipSpecialTokens) return;
        var bytes = tokenBytes[id];
        if (bytes is null)
        {
            // Filled on first use; concurrent callers may both compute it, with the same result.
            var piece = new List<byte>();
            if (literal[id]) piece.AddRange(Encoding.UTF8.GetBytes(tokens[id]));
            else AppendTokenBytes(id, tokens[id], piece);
            tokenBytes[id] = bytes = piece.ToArray();
        }
        output.AddRange(bytes);
    }

    private protected int? VocabId(string token) => tokenToId.TryGetValue(token, out var id) ? id : null;

    int? SetupId(int? id, string what) =>
        id is int i && (uint)i >= (uint)tokens.Length
            ? throw new InvalidDataException($"{Source}: {what} {i} is outside the vocabulary (size {tokens.Length}).")
            : id;

    private protected int? CheckId(int? id, string what) =>
        id is int i && (uint)i >= (uint)tokens.Length
            ? throw new ArgumentOutOfRangeException(what, $"{Source}: {what} {i} is outside the vocabulary (size {tokens.Length}).")
            : id;
}
