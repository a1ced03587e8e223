namespace SharpTune.Tokenization;

/// <summary>
/// What every tokenizer offers, whatever the model family: a vocabulary of ids and the text of ids. Encoding differs by
/// family and lives on the two kinds: <see cref="IEncoderTokenizer"/> (BERT-style: [CLS] A [SEP] B [SEP], segments, word
/// alignment) and <see cref="Decoders.IDecoderTokenizer"/> (GPT-2, Llama, Qwen2: a BOS/EOS rule, incremental decoding).
/// </summary>
public interface ITokenizer
{
    /// <summary>Number of ids.</summary>
    int VocabSize { get; }

    /// <summary>The vocabulary entry of <paramref name="id"/>, as stored (<c>##ing</c>, <c>Ġthe</c>, <c>▁the</c>).</summary>
    string IdToToken(int id);

    /// <summary>The id of a vocabulary entry written exactly as stored, or null.</summary>
    int? TokenToId(string token);

    /// <summary>The text of <paramref name="ids"/>; <paramref name="skipSpecialTokens"/> leaves out [CLS], &lt;s&gt; and their kind.</summary>
    string Decode(IEnumerable<int> ids, bool skipSpecialTokens);
}
