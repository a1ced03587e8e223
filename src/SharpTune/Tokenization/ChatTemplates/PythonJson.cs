using System.Globalization;
using System.Text;

namespace SharpTune.Tokenization.ChatTemplates;

/// <summary>
/// The <c>tojson</c> filter as transformers defines it: <c>json.dumps(x, ensure_ascii=False, indent=indent,
/// sort_keys=False)</c>. So keys keep their order, non-ASCII text is written as is, separators are <c>", "</c> and
/// <c>": "</c> on one line, or <c>","</c> and <c>": "</c> with an indent, and nothing is HTML-escaped (unlike
/// Jinja's own tojson).
/// </summary>
static class PythonJson
{
    public static string Dumps(object? value, int? indent, long maxChars)
    {
        var sb = new StringBuilder();
        Write(sb, value, indent, 0, maxChars);
        return sb.ToString();
    }

    static void Write(StringBuilder sb, object? value, int? indent, int level, long maxChars)
    {
        if (sb.Length > maxChars)
            throw new TemplateError(ChatTemplateErrorKind.Limit, $"tojson output exceeds {maxChars} characters");
        switch (value)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : Values.FormatFloat(d));
                break;
            case string s: WriteString(sb, s); break;
            case List<object?> list:
                WriteContainer(sb, '[', ']', list.Count, indent, level, (i) => Write(sb, list[i], indent, level + 1, maxChars));
                break;
            case Dictionary<string, object?> dict:
                var entries = dict.ToList();
                WriteContainer(sb, '{', '}', entries.Count, indent, level, i =>
                {
                    WriteString(sb, entries[i].Key);
                    sb.Append(": ");
                    Write(sb, entries[i].Value, indent, level + 1, maxChars);
                });
                break;
            default:
                throw TemplateError.Render($"tojson cannot serialize {Values.TypeName(value)}");
        }
    }

    static void WriteContainer(StringBuilder sb, char open, char close, int count, int? indent, int level, Action<int> item)
    {
        sb.Append(open);
        if (count == 0) { sb.Append(close); return; }
        for (int i = 0; i < count; i++)
        {
            if (indent is int width) sb.Append(i == 0 ? "\n" : ",\n").Append(' ', width * (level + 1));
            else if (i > 0) sb.Append(", ");
            item(i);
        }
        if (indent is int w) sb.Append('\n').Append(' ', w * level);
        sb.Append(close);
    }

    static void WriteString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case < ' ': sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); break;
                default: sb.Append(c); break;
            }
        }
        sb.Append('"');
    }
}
