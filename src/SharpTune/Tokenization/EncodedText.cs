namespace SharpTune.Tokenization;

/// <summary>
/// One model input, <c>[CLS] A [SEP]</c> or <c>[CLS] A [SEP] B [SEP]</c>, before padding.
/// </summary>
/// <param name="InputIds">Token ids, special tokens included. (T)</param>
/// <param name="TokenTypeIds">0 for [CLS], A and the first [SEP]; 1 for B and its [SEP]. (T)</param>
/// <param name="Truncated">Whether tokens were cut to fit the maximum length.</param>
public record EncodedText(int[] InputIds, int[] TokenTypeIds, bool Truncated)
{
    /// <summary>Number of tokens, special tokens included.</summary>
    public int Length => InputIds.Length;
}

/// <summary>
/// A pre-split sentence encoded for token-level labels (NER, POS), aligned like transformers'
/// <c>word_ids()</c>: each token knows the word it came from.
/// </summary>
/// <param name="WordIds">Index into the input words for each token; -1 for [CLS] and [SEP]. (T)</param>
/// <param name="IsFirstSubword">True on the first token of each word, where its label goes. (T)</param>
/// <param name="DroppedWordCount">Words at the end that lost every token to truncation, so have no label position.</param>
public sealed record EncodedWords(
    int[] InputIds, int[] TokenTypeIds, bool Truncated, int[] WordIds, bool[] IsFirstSubword, int DroppedWordCount)
    : EncodedText(InputIds, TokenTypeIds, Truncated);
