using System.Globalization;
using System.Text;

namespace SharpTune.Tokenization.ChatTemplates;

enum TokenKind { Name, String, Integer, Float, Operator, End }

readonly record struct Token(TokenKind Kind, string Text, object? Value, int Line, int Column)
{
    public bool Is(string op) => Kind == TokenKind.Operator && Text == op;

    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;

    public override string ToString() => Kind switch
    {
        TokenKind.End => "end of tag",
        TokenKind.String => $"string '{Text}'",
        _ => $"'{Text}'",
    };
}

enum PartKind { Text, Output, Statement, Comment }

/// <summary>One piece of the template: literal text, or a tag with its expression tokens.</summary>
sealed class Part
{
    public PartKind Kind;
    public string Text = "";
    public int Offset;          // source offset of Text (for Text parts)
    public List<Token> Tokens = [];
    public int Line, Column;
    public bool StripBefore, StripAfter;  // '-' on the open / close delimiter
    public bool KeepBefore, KeepAfter;    // '+' on the open / close delimiter
}

/// <summary>
/// Splits a template into text and tags, then applies whitespace control the way Jinja's lexer does with
/// the options transformers renders with: <c>trim_blocks=True</c>, <c>lstrip_blocks=True</c>, and the default
/// <c>keep_trailing_newline=False</c>.
/// </summary>
sealed class TemplateLexer
{
    static readonly string[] Operators =
        ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}",
         ",", ".", ":", "|"];

    readonly string _text;
    readonly string _source;
    readonly List<int> _lineStarts = [];
    int _pos;

    TemplateLexer(string text, string source)
    {
        _text = text;
        _source = source;
    }

    public static List<Part> Lex(string template, string source)
    {
        // Jinja joins source.splitlines() with "\n", then drops one trailing newline.
        var text = template.Replace("\r\n", "\n").Replace('\r', '\n');
        if (text.EndsWith('\n')) text = text[..^1];
        var lexer = new TemplateLexer(text, source);
        var parts = lexer.Split();
        lexer.ApplyWhitespaceControl(parts);
        return parts;
    }

    List<Part> Split()
    {
        var parts = new List<Part>();
        while (_pos < _text.Length)
        {
            int open = FindTagOpen(_pos);
            if (open > _pos || open < 0)
            {
                int end = open < 0 ? _text.Length : open;
                parts.Add(new Part { Kind = PartKind.Text, Text = _text[_pos..end], Offset = _pos });
                _pos = end;
                if (open < 0) break;
            }
            parts.Add(ReadTag());
        }
        return parts;
    }

    int FindTagOpen(int from)
    {
        for (int i = _text.IndexOf('{', from); i >= 0 && i + 1 < _text.Length; i = _text.IndexOf('{', i + 1))
        {
            char c = _text[i + 1];
            if (c is '{' or '%' or '#') return i;
        }
        return -1;
    }

    Part ReadTag()
    {
        var (line, column) = Position(_pos);
        char kind = _text[_pos + 1];
        var part = new Part
        {
            Kind = kind switch { '{' => PartKind.Output, '%' => PartKind.Statement, _ => PartKind.Comment },
            Line = line,
            Column = column,
        };
        _pos += 2;
        if (_pos < _text.Length && _text[_pos] == '-') { part.StripBefore = true; _pos++; }
        else if (_pos < _text.Length && _text[_pos] == '+') { part.KeepBefore = true; _pos++; }

        if (part.Kind == PartKind.Comment)
        {
            int close = _text.IndexOf("#}", _pos, StringComparison.Ordinal);
            if (close < 0) throw Error(line, column, "comment '{#' is never closed: expected '#}'");
            if (close > _pos && _text[close - 1] == '-') part.StripAfter = true;
            if (close > _pos && _text[close - 1] == '+') part.KeepAfter = true;
            _pos = close + 2;
            return part;
        }

        string closer = part.Kind == PartKind.Output ? "}}" : "%}";
        int depth = 0;
        while (true)
        {
            while (_pos < _text.Length && char.IsWhiteSpace(_text[_pos])) _pos++;
            if (_pos >= _text.Length)
            {
                string opener = part.Kind == PartKind.Output ? "{{" : "{%";
                throw Error(line, column, $"'{opener}' is never closed: expected '{closer}' before the end of the template");
            }
            if (depth == 0 && TryClose(part, closer)) return part;
            var token = ReadToken();
            if (token.Is("(") || token.Is("[") || token.Is("{")) depth++;
            if ((token.Is(")") || token.Is("]") || token.Is("}")) && depth > 0) depth--;
            part.Tokens.Add(token);
        }
    }

    bool TryClose(Part part, string closer)
    {
        foreach (var (prefix, strip, keep) in new[] { ("-", true, false), ("+", false, true), ("", false, false) })
        {
            if (string.CompareOrdinal(_text, _pos, prefix + closer, 0, prefix.Length + 2) != 0) continue;
            if (keep && part.Kind == PartKind.Output) continue;
            part.StripAfter = strip;
            part.KeepAfter = keep;
            _pos += prefix.Length + 2;
            var (l, c) = Position(_pos - 2);
            part.Tokens.Add(new Token(TokenKind.End, closer, null, l, c));
            return true;
        }
        return false;
    }

    Token ReadToken()
    {
        var (line, column) = Position(_pos);
        char c = _text[_pos];
        if (char.IsLetter(c) || c == '_')
        {
            int start = _pos;
            while (_pos < _text.Length && (char.IsLetterOrDigit(_text[_pos]) || _text[_pos] == '_')) _pos++;
            return new Token(TokenKind.Name, _text[start.._pos], null, line, column);
        }
        if (char.IsAsciiDigit(c)) return ReadNumber(line, column);
        if (c is '\'' or '"') return ReadString(c, line, column);
        foreach (var op in Operators)
        {
            if (string.CompareOrdinal(_text, _pos, op, 0, op.Length) != 0) continue;
            _pos += op.Length;
            return new Token(TokenKind.Operator, op, null, line, column);
        }
        throw Error(line, column, $"unexpected character '{c}'");
    }

    Token ReadNumber(int line, int column)
    {
        int start = _pos;
        while (_pos < _text.Length && (char.IsAsciiDigit(_text[_pos]) || _text[_pos] == '_')) _pos++;
        bool isFloat = false;
        if (_pos + 1 < _text.Length && _text[_pos] == '.' && char.IsAsciiDigit(_text[_pos + 1]))
        {
            isFloat = true;
            _pos++;
            while (_pos < _text.Length && char.IsAsciiDigit(_text[_pos])) _pos++;
        }
        if (_pos < _text.Length && _text[_pos] is 'e' or 'E')
        {
            int save = _pos++;
            if (_pos < _text.Length && _text[_pos] is '+' or '-') _pos++;
            if (_pos < _text.Length && char.IsAsciiDigit(_text[_pos]))
            {
                isFloat = true;
                while (_pos < _text.Length && char.IsAsciiDigit(_text[_pos])) _pos++;
            }
            else _pos = save;
        }
        string raw = _text[start.._pos].Replace("_", "");
        if (isFloat)
            return new Token(TokenKind.Float, raw, double.Parse(raw, CultureInfo.InvariantCulture), line, column);
        if (!long.TryParse(raw, NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            throw Error(line, column, $"integer literal {raw} is too large");
        return new Token(TokenKind.Integer, raw, value, line, column);
    }

    Token ReadString(char quote, int line, int column)
    {
        var sb = new StringBuilder();
        _pos++;
        while (true)
        {
            if (_pos >= _text.Length) throw Error(line, column, $"string literal is never closed: expected {quote}");
            char c = _text[_pos++];
            if (c == quote) break;
            if (c != '\\') { sb.Append(c); continue; }
            if (_pos >= _text.Length) continue;
            char e = _text[_pos++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case '0': sb.Append('\0'); break;
                case '\\' or '\'' or '"': sb.Append(e); break;
                case '\n': break;
                case 'x' or 'u' or 'U':
                    int width = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    if (_pos + width > _text.Length ||
                        !int.TryParse(_text.AsSpan(_pos, width), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int code))
                        throw Error(line, column, $"bad \\{e} escape in string literal");
                    sb.Append(char.ConvertFromUtf32(code));
                    _pos += width;
                    break;
                default: sb.Append('\\').Append(e); break;  // Python keeps unknown escapes as written
            }
        }
        var value = sb.ToString();
        return new Token(TokenKind.String, value, value, line, column);
    }

    void ApplyWhitespaceControl(List<Part> parts)
    {
        for (int i = 0; i < parts.Count; i++)
        {
            var part = parts[i];
            if (part.Kind != PartKind.Text) continue;
            string text = part.Text;
            int offset = part.Offset;
            var prev = i > 0 ? parts[i - 1] : null;
            var next = i + 1 < parts.Count ? parts[i + 1] : null;

            if (prev is { StripAfter: true })
            {
                string trimmed = text.TrimStart();
                offset += text.Length - trimmed.Length;
                text = trimmed;
            }
            else if (prev is { Kind: PartKind.Statement or PartKind.Comment, KeepAfter: false } && text.StartsWith('\n'))
            {
                text = text[1..];  // trim_blocks: the first newline after a block tag
                offset++;
            }

            if (next is { StripBefore: true })
                text = text.TrimEnd();
            else if (next is { Kind: PartKind.Statement or PartKind.Comment, KeepBefore: false })
            {
                // lstrip_blocks: spaces and tabs from the start of the line up to a block tag.
                int lineStart = text.LastIndexOf('\n') + 1;
                bool atLineStart = lineStart > 0 || offset == 0 || _text[offset - 1] == '\n';
                if (atLineStart && text.AsSpan(lineStart).TrimStart(" \t").IsEmpty) text = text[..lineStart];
            }
            part.Text = text;
        }
    }

    (int Line, int Column) Position(int offset)
    {
        if (_lineStarts.Count == 0)
        {
            _lineStarts.Add(0);
            for (int i = _text.IndexOf('\n'); i >= 0; i = _text.IndexOf('\n', i + 1)) _lineStarts.Add(i + 1);
        }
        int index = _lineStarts.BinarySearch(offset);
        if (index < 0) index = ~index - 1;
        return (index + 1, offset - _lineStarts[index] + 1);
    }

    ChatTemplateException Error(int line, int column, string message) =>
        new(ChatTemplateErrorKind.Syntax, _source, line, column, message);
}
