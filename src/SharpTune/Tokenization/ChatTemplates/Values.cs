using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SharpTune.Tokenization.ChatTemplates;

// Runtime values follow Python as Jinja sees it: null is None, long and double are int and float, List<object?> is a
// list, Dictionary<string, object?> a dict (insertion ordered), plus the types below.

/// <summary>Jinja's default Undefined: renders empty, is falsy, iterates empty; using it further is an error.</summary>
sealed class Undefined(string name)
{
    public string Name { get; } = name;
}

/// <summary>The object <c>namespace(...)</c> returns: attributes that <c>set ns.attr</c> may change from inside loops.</summary>
sealed class Namespace
{
    public Dictionary<string, object?> Attributes { get; } = [];
}

/// <summary>A function callable from the template (<c>range</c>, <c>namespace</c>, <c>raise_exception</c>...).</summary>
sealed class Callable(string name, Func<List<object?>, Dictionary<string, object?>, object?> invoke)
{
    public string Name { get; } = name;

    public object? Invoke(List<object?> args, Dictionary<string, object?> kwargs) => invoke(args, kwargs);
}

/// <summary><c>range(...)</c>, kept lazy so that <c>range(10**9)</c> costs nothing until iterated (and then steps).</summary>
sealed class RangeValue(long start, long stop, long step) : IEnumerable<object?>
{
    public long Count => step > 0 ? Math.Max(0, (stop - start + step - 1) / step) : Math.Max(0, (start - stop - step - 1) / -step);

    public object? this[long index] => start + index * step;

    public bool Has(long value) =>
        (step > 0 ? value >= start && value < stop : value <= start && value > stop) && (value - start) % step == 0;

    public IEnumerator<object?> GetEnumerator()
    {
        for (long i = 0; i < Count; i++) yield return start + i * step;
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>The <c>loop</c> variable inside a for loop.</summary>
sealed class LoopInfo
{
    public long Index0, Length;
    public object? Previous, Next;

    public object? Get(string name) => name switch
    {
        "index" => Index0 + 1,
        "index0" => Index0,
        "revindex" => Length - Index0,
        "revindex0" => Length - Index0 - 1,
        "first" => Index0 == 0,
        "last" => Index0 == Length - 1,
        "length" => Length,
        "previtem" => Index0 > 0 ? Previous : new Undefined("loop.previtem"),
        "nextitem" => Index0 < Length - 1 ? Next : new Undefined("loop.nextitem"),
        "depth" => 1L,
        "depth0" => 0L,
        _ => throw TemplateError.Unsupported($"'loop.{name}' is not supported"),
    };
}

static class Values
{
    public static bool IsTruthy(object? value) => value switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> list => list.Count > 0,
        Dictionary<string, object?> dict => dict.Count > 0,
        RangeValue range => range.Count > 0,
        _ => true,
    };

    public static bool IsNumber(object? value) => value is long or double or bool;

    public static double ToDouble(object? value) => value switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw TemplateError.Render($"expected a number, got {TypeName(value)}"),
    };

    public static string TypeName(object? value) => value switch
    {
        null => "none",
        Undefined u => $"undefined ('{u.Name}')",
        bool => "boolean",
        long => "integer",
        double => "float",
        string => "string",
        List<object?> => "list",
        Dictionary<string, object?> => "dict",
        RangeValue => "range",
        Namespace => "namespace",
        LoopInfo => "loop",
        Callable c => $"function '{c.Name}'",
        _ => value.GetType().Name,
    };

    /// <summary>
    /// Python's <c>str()</c>, which is what <c>{{ x }}</c> and <c>~</c> print; undefined prints empty. Containers are
    /// printed with <c>repr()</c> of their items, up to <paramref name="maxChars"/> (then a limit error).
    /// </summary>
    public static string ToStr(object? value, long maxChars = int.MaxValue / 2) => value switch
    {
        Undefined => "",
        string s => s,
        _ => Repr(value, maxChars),
    };

    public static string Repr(object? value, long maxChars = int.MaxValue / 2)
    {
        var sb = new StringBuilder();
        WriteRepr(sb, value, maxChars);
        return sb.ToString();
    }

    static void WriteRepr(StringBuilder sb, object? value, long maxChars)
    {
        if (sb.Length > maxChars)
            throw new TemplateError(ChatTemplateErrorKind.Limit, $"printing a value takes more than {maxChars} characters");
        switch (value)
        {
            case null: sb.Append("None"); break;
            case Undefined: break;
            case bool b: sb.Append(b ? "True" : "False"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(FormatFloat(d)); break;
            case string s: sb.Append(PythonStringRepr(s)); break;
            case List<object?> list:
                sb.Append('[');
                for (int i = 0; i < list.Count; i++) { if (i > 0) sb.Append(", "); WriteRepr(sb, list[i], maxChars); }
                sb.Append(']');
                break;
            case Dictionary<string, object?> dict:
                sb.Append('{');
                bool first = true;
                foreach (var kv in dict)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    WriteRepr(sb, kv.Key, maxChars);
                    sb.Append(": ");
                    WriteRepr(sb, kv.Value, maxChars);
                }
                sb.Append('}');
                break;
            case RangeValue r: sb.Append($"range({r[0]}, ...)"); break;
            default: sb.Append($"<{TypeName(value)}>"); break;
        }
        if (sb.Length > maxChars)
            throw new TemplateError(ChatTemplateErrorKind.Limit, $"printing a value takes more than {maxChars} characters");
    }

    // Python quotes with ' unless the text has ' and no ", and escapes backslashes, the quote and control characters.
    static string PythonStringRepr(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder().Append(quote);
        foreach (char c in s)
        {
            if (c == '\\' || c == quote) sb.Append('\\').Append(c);
            else if (c == '\n') sb.Append("\\n");
            else if (c == '\r') sb.Append("\\r");
            else if (c == '\t') sb.Append("\\t");
            else if (c < ' ' || c == '\x7f') sb.Append($"\\x{(int)c:x2}");
            else sb.Append(c);
        }
        return sb.Append(quote).ToString();
    }

    /// <summary>Python's float repr: shortest round-trip digits, always with a '.' or an exponent.</summary>
    public static string FormatFloat(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        string text = d.ToString("R", CultureInfo.InvariantCulture);
        double abs = Math.Abs(d);
        if (abs != 0 && (abs >= 1e16 || abs < 1e-4) && text.Contains('E'))
        {
            var pieces = text.Split('E');
            int exp = int.Parse(pieces[1], CultureInfo.InvariantCulture);
            return $"{pieces[0]}e{(exp < 0 ? "-" : "+")}{Math.Abs(exp):00}";
        }
        if (text.Contains('E'))
            text = d.ToString("F" + Math.Min(20, Math.Max(1, (int)-Math.Floor(Math.Log10(abs)) + 15)), CultureInfo.InvariantCulture).TrimEnd('0');
        return text.Contains('.') ? text.TrimEnd('.') + (text.EndsWith('.') ? ".0" : "") : text + ".0";
    }

    public static new bool Equals(object? a, object? b)
    {
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b))
            return a is long la && b is long lb ? la == lb : ToDouble(a) == ToDouble(b);
        if (a is string sa && b is string sb) return sa == sb;
        if (a is List<object?> xa && b is List<object?> xb)
            return xa.Count == xb.Count && xa.Zip(xb).All(p => Equals(p.First, p.Second));
        if (a is Dictionary<string, object?> da && b is Dictionary<string, object?> db)
            return da.Count == db.Count && da.All(kv => db.TryGetValue(kv.Key, out var v) && Equals(kv.Value, v));
        return ReferenceEquals(a, b);
    }

    public static int Compare(object? a, object? b, string op)
    {
        if (IsNumber(a) && IsNumber(b))
            return a is long la && b is long lb ? la.CompareTo(lb) : ToDouble(a).CompareTo(ToDouble(b));
        if (a is string sa && b is string sb) return string.CompareOrdinal(sa, sb);
        throw TemplateError.Render($"'{op}' is not supported between {TypeName(a)} and {TypeName(b)}");
    }

    /// <summary>Items of anything iterable; undefined iterates empty, as in Jinja. A dict yields its keys.</summary>
    public static IEnumerable<object?> Iterate(object? value) => value switch
    {
        Undefined => [],
        List<object?> list => list,
        RangeValue range => range,
        Dictionary<string, object?> dict => dict.Keys,
        string s => s.EnumerateRunes().Select(r => (object?)r.ToString()),
        _ => throw TemplateError.Render($"{TypeName(value)} is not iterable"),
    };

    /// <summary>
    /// Converts what a caller passes in <c>extra</c> (CLR primitives, dictionaries, lists, JSON) to runtime values.
    /// </summary>
    public static object? FromClr(object? value, string path) =>
        path.Count(c => c is '.' or '[') > 64
            ? throw TemplateError.Render($"'{path}' nests deeper than 64 levels (a cycle?)")
            : value switch
    {
        null => null,
        string or bool or long or double or Undefined or Callable or Namespace => value,
        int or short or byte or sbyte or ushort or uint => Convert.ToInt64(value, CultureInfo.InvariantCulture),
        ulong u => u <= long.MaxValue ? (long)u : (object)(double)u,
        float or decimal => Convert.ToDouble(value, CultureInfo.InvariantCulture),
        char c => c.ToString(),
        ChatMessage m => Message(m),
        JsonElement json => FromJson(json),
        IDictionary<string, object?> dict => dict.ToDictionary(kv => kv.Key, kv => FromClr(kv.Value, $"{path}.{kv.Key}")),
        IDictionary<string, string> dict => dict.ToDictionary(kv => kv.Key, kv => (object?)kv.Value),
        IDictionary dict => dict.Keys.Cast<object>().ToDictionary(
            k => k as string ?? throw TemplateError.Render($"'{path}' has a non-string key {k}"),
            k => FromClr(dict[k], $"{path}.{k}")),
        IEnumerable items => items.Cast<object?>().Select((x, i) => FromClr(x, $"{path}[{i}]")).ToList(),
        _ => throw TemplateError.Render($"'{path}' has a type templates cannot use: {value.GetType().Name}"),
    };

    public static Dictionary<string, object?> Message(ChatMessage message) =>
        new() { ["role"] = message.Role, ["content"] = message.Content };

    static object? FromJson(JsonElement json) => json.ValueKind switch
    {
        JsonValueKind.String => json.GetString(),
        JsonValueKind.Number => json.TryGetInt64(out long l) ? l : (object)json.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Array => json.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.Object => json.EnumerateObject().ToDictionary(p => p.Name, p => FromJson(p.Value)),
        _ => null,
    };

    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary>
    /// Title case. Python's <c>str.title()</c> (<paramref name="wordStarts"/> null) starts a word after any non-letter;
    /// Jinja's <c>title</c> filter starts one after whitespace or one of <paramref name="wordStarts"/>.
    /// </summary>
    public static string Title(string s, string? wordStarts)
    {
        var sb = new StringBuilder(s.Length);
        bool atWordStart = true;
        foreach (char c in s)
        {
            sb.Append(atWordStart ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            atWordStart = wordStarts == null ? !char.IsLetter(c) : char.IsWhiteSpace(c) || wordStarts.Contains(c);
        }
        return sb.ToString();
    }
}
