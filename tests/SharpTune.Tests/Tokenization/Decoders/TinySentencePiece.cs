using SharpTune.Tokenization.Decoders;

namespace SharpTune.Tests.Tokenization.Decoders;

/// <summary>
/// A hand-built SentencePiece vocabulary: &lt;unk&gt; &lt;s&gt; &lt;/s&gt;, the 256 byte tokens, then pieces with scores
/// chosen so the order of merges matters ("bc" outranks "ab", so "abc" becomes ▁a + bc, not ▁ + ab + c).
/// </summary>
static class TinySentencePiece
{
    public const int Unk = 0, Bos = 1, Eos = 2, FirstByte = 3;

    static readonly (string Piece, float Score)[] Pieces =
    [
        ("▁", -1), ("a", -2), ("b", -3), ("c", -4), ("h", -5), ("e", -6), ("l", -7), ("o", -8), ("w", -9), ("r", -10),
        ("d", -11), ("bc", -12), ("he", -13), ("ll", -14), ("llo", -15), ("hello", -16), ("▁hello", -17), ("or", -18),
        ("ld", -19), ("ab", -20), ("orld", -21), ("▁w", -22), ("▁world", -23), ("▁a", -25),
    ];

    public static string[] Tokens { get; } =
        [.. new[] { "<unk>", "<s>", "</s>" }, .. Enumerable.Range(0, 256).Select(b => $"<0x{b:X2}>"), .. Pieces.Select(p => p.Piece)];

    public static float[] Scores { get; } = [0, 0, 0, .. Enumerable.Repeat(0f, 256), .. Pieces.Select(p => p.Score)];

    public static int[] Types { get; } =
        [GgufTokenType.Unknown, GgufTokenType.Control, GgufTokenType.Control, .. Enumerable.Repeat(GgufTokenType.Byte, 256),
         .. Pieces.Select(_ => GgufTokenType.Normal)];

    public static int Id(string piece) => Array.IndexOf(Tokens, piece) is var i and >= 0 ? i : throw new ArgumentException(piece);

    public static DecoderTokenizerData Data(bool? addEos = null) =>
        new("llama", null, Tokens, Types, Scores: Scores, Bos: Bos, Eos: Eos, Unk: Unk, AddBos: true, AddEos: addEos);

    /// <summary>Merges as tokenizer.json lists them: every split of a piece into two pieces, by the piece's score.</summary>
    public static IEnumerable<string> Merges() =>
        from p in Pieces.OrderByDescending(p => p.Score)
        from split in Enumerable.Range(1, Math.Max(0, p.Piece.Length - 1))
        let left = p.Piece[..split]
        let right = p.Piece[split..]
        where Pieces.Any(x => x.Piece == left) && Pieces.Any(x => x.Piece == right)
        select left + " " + right;
}
