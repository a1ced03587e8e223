namespace SharpTune.Tokenization.Decoders;

/// <summary>
/// GPT-2's reversible byte-to-character mapping (HF ByteLevel, llama.cpp <c>unicode_byte_to_utf8</c>): printable
/// Latin-1 bytes map to themselves, the other 68 bytes to U+0100 onwards in byte order, so every byte string is a
/// string of visible characters (a space becomes 'Ġ', a newline 'Ċ').
/// </summary>
public static class ByteLevelAlphabet
{
    static readonly char[] byteToChar = BuildByteToChar();
    static readonly Dictionary<char, byte> charToByte = BuildCharToByte();

    public static char ByteToChar(byte b) => byteToChar[b];

    public static bool TryCharToByte(char c, out byte b) => charToByte.TryGetValue(c, out b);

    /// <summary>The mapped form of <paramref name="text"/>'s UTF-8 bytes.</summary>
    public static string Encode(ReadOnlySpan<char> text)
    {
        int byteCount = System.Text.Encoding.UTF8.GetByteCount(text);
        Span<byte> bytes = byteCount <= 512 ? stackalloc byte[byteCount] : new byte[byteCount];
        System.Text.Encoding.UTF8.GetBytes(text, bytes);
        return string.Create(byteCount, bytes.ToArray(), static (chars, b) =>
        {
            for (int i = 0; i < b.Length; i++) chars[i] = byteToChar[b[i]];
        });
    }

    /// <summary>Appends the bytes a mapped token string stands for; characters outside the alphabet as UTF-8.</summary>
    public static void AppendBytes(string token, List<byte> output)
    {
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in token.EnumerateRunes())
        {
            if (rune.IsBmp && charToByte.TryGetValue((char)rune.Value, out var b)) { output.Add(b); continue; }
            int n = rune.EncodeToUtf8(utf8);
            for (int i = 0; i < n; i++) output.Add(utf8[i]);
        }
    }

    static bool Printable(int b) => b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;

    static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++) map[b] = Printable(b) ? (char)b : (char)next++;
        return map;
    }

    static Dictionary<char, byte> BuildCharToByte()
    {
        var inverse = new Dictionary<char, byte>(256);
        for (int b = 0; b < 256; b++) inverse[byteToChar[b]] = (byte)b;
        return inverse;
    }
}
