using System.Text;

namespace SharpTune.Tokenization;

/// <summary>
/// A WordPiece <c>vocab.txt</c>: one token per line, the id is the line number from 0. Read here as well as
/// by Microsoft.ML.Tokenizers because the library exposes neither the vocabulary size nor id-to-token
/// lookup, and because its errors ("An item with the same key has already been added") do not say which
/// file or line is wrong.
/// </summary>
internal sealed class WordPieceVocabulary
{
    readonly string[] _tokens;
    readonly Dictionary<string, int> _ids;

    /// <summary>The file's bytes, handed unchanged to Microsoft.ML.Tokenizers.</summary>
    public byte[] Bytes { get; }

    public int Count => _tokens.Length;

    WordPieceVocabulary(byte[] bytes, string[] tokens, Dictionary<string, int> ids)
    {
        Bytes = bytes;
        _tokens = tokens;
        _ids = ids;
    }

    public string this[int id] => _tokens[id];

    public bool TryGetId(string token, out int id) => _ids.TryGetValue(token, out id);

    /// <summary>Reads and checks a vocabulary; <paramref name="source"/> names it in error messages.</summary>
    public static WordPieceVocabulary Read(Stream stream, string source)
    {
        byte[] bytes;
        using (var buffer = new MemoryStream())
        {
            stream.CopyTo(buffer);
            bytes = buffer.ToArray();
        }
        // Same line rules as the library: a BOM is skipped, \n and \r\n both end a line, nothing is trimmed.
        var tokens = new List<string>();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        using var reader = new StreamReader(new MemoryStream(bytes), Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        while (reader.ReadLine() is { } line)
        {
            if (!ids.TryAdd(line, tokens.Count))
                throw new InvalidDataException(
                    $"{source}: line {tokens.Count + 1} repeats the token '{line}' of line {ids[line] + 1}; every line must be a distinct token");
            tokens.Add(line);
        }
        if (tokens.Count == 0)
            throw new InvalidDataException($"{source}: the vocabulary is empty; expected one WordPiece token per line");
        return new WordPieceVocabulary(bytes, [.. tokens], ids);
    }

    /// <summary>The id of a special token the tokenizer needs, or an error naming the token and config field.</summary>
    public int RequireSpecial(string token, string field, string source) =>
        TryGetId(token, out int id)
            ? id
            : throw new InvalidDataException(
                $"{source}: the special token '{token}' ({field}) is not in the vocabulary of {Count} tokens");
}
