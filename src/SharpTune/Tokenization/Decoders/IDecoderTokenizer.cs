namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// The tokenizer of a decoder language model (GPT-2, Llama 2/3, Qwen2, SmolLM): text to ids with the model's
/// BOS/EOS rule, ids to text, and incremental decoding for generation. Built by <see cref="DecoderTokenizers"/>
/// from a Hugging Face folder or from GGUF tokenizer metadata.
/// </summary>
/// <remarks><see cref="ITokenizer.VocabSize"/> counts the base vocabulary plus added tokens.</remarks>
public interface IDecoderTokenizer : ITokenizer
{
    int? BosId { get; }
    int? EosId { get; }
    int? PadId { get; }
    int? UnkId { get; }

    /// <summary>The id batches are padded with: PAD, else EOS, else 0 (padded positions are masked, so any id serves).</summary>
    int PaddingId => PadId ?? EosId ?? 0;

    /// <summary>Whether <see cref="Encode"/> prepends BOS / appends EOS when asked for special tokens.</summary>
    bool AddBos { get; }
    bool AddEos { get; }

    /// <summary>Ids that end generation: EOS plus end-of-turn tokens (&lt;|im_end|&gt;, &lt;|eot_id|&gt;, ...).</summary>
    IReadOnlySet<int> StopIds { get; }

    /// <summary>The Jinja chat template shipped with the tokenizer, when there is one.</summary>
    string? ChatTemplate { get; }

    /// <summary>
    /// Token ids of <paramref name="text"/>. <paramref name="addSpecialTokens"/>: apply the BOS/EOS rule.
    /// <paramref name="parseSpecial"/>: special tokens written in the text (&lt;|im_start|&gt;, &lt;s&gt;) map to their
    /// ids, as for a rendered chat template; otherwise they are tokenized as plain text. Non-special added tokens
    /// are always recognised (as Hugging Face and llama.cpp do).
    /// A rendered chat template already holds its BOS text: encode it with <c>addSpecialTokens: false, parseSpecial: true</c>.
    /// </summary>
    IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true, bool parseSpecial = false);

    /// <summary>Text of <paramref name="ids"/>; invalid UTF-8 becomes U+FFFD. Special tokens are kept unless asked otherwise.</summary>
    new string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false);

    /// <summary>An incremental decoder: feed ids one by one, get text as soon as its UTF-8 is complete.</summary>
    DecodeStream CreateDecodeStream(bool skipSpecialTokens = false);

    /// <summary>Whether the id is a special (control) token, skipped by <c>skipSpecialTokens</c>.</summary>
    bool IsSpecial(int id);
}
