using System.Text;

namespace SharpTune.DatasetConverter;

/// <summary>
/// Turns a raw RFC 822 message into the text a classifier sees: the Subject header's value, a blank
/// line, then the body as stored. MIME parts, HTML and quoted-printable are not decoded; only line
/// ends, control characters and surrounding white space are normalised. Every other header is dropped
/// because headers such as Received, X-Spam-* and the mailing-list ones name the collection the
/// message came from, which is the label.
/// </summary>
public static class MailText
{
    public static string SubjectAndBody(string raw)
    {
        string message = NormalizeLineEnds(raw);
        int split = message.IndexOf("\n\n", StringComparison.Ordinal);
        string headers = split < 0 ? message : message[..split];
        string body = split < 0 ? "" : message[(split + 2)..];
        string subject = FindSubject(headers);
        string text = subject.Length == 0 ? body.Trim() : subject + "\n\n" + body.Trim();
        return ReplaceControlCharacters(text.TrimEnd());
    }

    /// <summary>The unfolded value of the first Subject header, or "" when there is none.</summary>
    public static string FindSubject(string headers)
    {
        string[] lines = headers.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            if (!lines[i].StartsWith("Subject:", StringComparison.OrdinalIgnoreCase)) continue;
            var value = new StringBuilder(lines[i]["Subject:".Length..].Trim());
            // RFC 5322 folding: a line that starts with white space continues the header above it.
            for (int j = i + 1; j < lines.Length && lines[j].Length > 0 && lines[j][0] is ' ' or '\t'; j++)
                value.Append(' ').Append(lines[j].Trim());
            return value.ToString().Trim();
        }
        return "";
    }

    static string NormalizeLineEnds(string text) => text.Replace("\r\n", "\n").Replace('\r', '\n');

    /// <summary>
    /// Control characters other than tab and newline become spaces: a few spam messages carry ESC
    /// (ISO-2022-JP shift sequences), form feeds and stray C0/C1 bytes that some CSV tools reject.
    /// </summary>
    static string ReplaceControlCharacters(string text)
    {
        if (!text.Any(IsStrayControl)) return text;
        var chars = text.ToCharArray();
        for (int i = 0; i < chars.Length; i++)
            if (IsStrayControl(chars[i])) chars[i] = ' ';
        return new string(chars);
    }

    static bool IsStrayControl(char c) => char.IsControl(c) && c is not ('\n' or '\t');
}
