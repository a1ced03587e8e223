namespace SharpTune.Tokenization;

/// <summary>
/// The tokenizer of an encoder model, what fine-tuning and prediction need of it: a text or a text pair as
/// <c>[CLS] A [SEP] B [SEP]</c> with segment ids and truncation to a maximum length, pre-split words with the word of every
/// token, and the special ids a batch is padded and read with. <see cref="BertTextTokenizer"/> (WordPiece) implements it.
/// </summary>
public interface IEncoderTokenizer : ITokenizer
{
    int PadId { get; }
    int ClsId { get; }
    int SepId { get; }
    int UnkId { get; }

    /// <summary>Ids of <paramref name="text"/> without special tokens or truncation.</summary>
    IReadOnlyList<int> Tokenize(string text);

    /// <summary>
    /// <c>[CLS] text [SEP]</c>, or <c>[CLS] text [SEP] pair [SEP]</c>, at most <paramref name="maxLength"/> tokens with the
    /// special ones; a pair is cut longest side first.
    /// </summary>
    EncodedText Encode(string text, string? pair = null, int maxLength = 512);

    /// <summary>Pre-split words as <c>[CLS] w0 w1 ... [SEP]</c> with each token's word (transformers' <c>is_split_into_words</c>).</summary>
    EncodedWords EncodeWords(IReadOnlyList<string> words, int maxLength = 512);
}
