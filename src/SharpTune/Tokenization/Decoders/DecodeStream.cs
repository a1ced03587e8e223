using System.Text;

namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// Incremental decoding for generation: <see cref="Next"/> takes one id and returns the text it completes. Bytes of
/// a character split over several tokens (byte-level pieces, &lt;0xE4&gt; byte tokens) are held until the character is
/// whole, so a streamed answer never shows broken characters; the concatenation of all returned text equals
/// <see cref="IDecoderTokenizer.Decode"/> of the same ids.
/// </summary>
public sealed class DecodeStream
{
    readonly DecoderTokenizer tokenizer;
    readonly bool skipSpecialTokens;
    readonly Decoder utf8 = new UTF8Encoding(false, false).GetDecoder();
    readonly List<byte> bytes = [];
    bool started;

    internal DecodeStream(DecoderTokenizer tokenizer, bool skipSpecialTokens)
    {
        this.tokenizer = tokenizer;
        this.skipSpecialTokens = skipSpecialTokens;
        started = !tokenizer.StripsLeadingSpace;
    }

    /// <summary>Text completed by <paramref name="id"/> (empty while a character is still incomplete).</summary>
    public string Next(int id)
    {
        bytes.Clear();
        tokenizer.AppendDecodedBytes(id, skipSpecialTokens, bytes);
        return Emit(flush: false);
    }

    /// <summary>Ends the stream: an incomplete trailing character becomes U+FFFD.</summary>
    public string Flush()
    {
        bytes.Clear();
        return Emit(flush: true);
    }

    string Emit(bool flush)
    {
        var input = bytes.ToArray();
        var chars = new char[utf8.GetCharCount(input, 0, input.Length, flush)];
        int n = utf8.GetChars(input, 0, input.Length, chars, 0, flush);
        var text = new string(chars, 0, n);
        if (!started && text.Length > 0)
        {
            // SentencePiece: the space the tokenizer prepended to the text is dropped once, at the start (HF Strip decoder).
            started = true;
            if (text[0] == ' ') text = text[1..];
        }
        return text;
    }
}
