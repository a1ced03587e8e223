using System.Text;

namespace SharpTune.Tokenization.ChatTemplates;

/// <summary>The tests (<c>x is name</c>) chat templates use; an unknown name fails when the template is parsed.</summary>
static class Tests
{
    static readonly string[] Known =
    [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false", "float", "in", "integer",
        "iterable", "lower", "mapping", "ne", "none", "number", "odd", "sameas", "sequence", "string", "true",
        "undefined", "upper",
    ];

    public static string KnownList => string.Join(", ", Known);

    public static bool IsKnown(string name) => Known.Contains(name);

    public static bool Apply(string name, object? value, List<object?> args)
    {
        object? Arg() => args.Count > 0 ? args[0] : throw TemplateError.Render($"test '{name}' needs an argument");
        return name switch
        {
            "defined" => value is not Undefined,
            "undefined" => value is Undefined,
            "none" => value is null,
            "string" => value is string,
            "boolean" => value is bool,
            "true" => value is true,
            "false" => value is false,
            "integer" => value is long,
            "float" => value is double,
            "number" => value is long or double or bool,  // Python's bool is an int
            "mapping" => value is Dictionary<string, object?> or Namespace,
            "iterable" => value is string or List<object?> or Dictionary<string, object?> or RangeValue or Undefined,
            "sequence" => value is string or List<object?> or Dictionary<string, object?> or RangeValue or Undefined,
            "callable" => value is Callable,
            "odd" => Modulo(value, 2L) == 1,
            "even" => Modulo(value, 2L) == 0,
            "divisibleby" => Modulo(value, Arg()) == 0,
            "eq" or "equalto" or "sameas" => Values.Equals(value, Arg()),
            "ne" => !Values.Equals(value, Arg()),
            "in" => Evaluator.Contains(Arg(), value),
            "lower" => Values.ToStr(value) is var s && s.Any(char.IsLower) && !s.Any(char.IsUpper),  // str(value).islower()
            "upper" => Values.ToStr(value) is var u && u.Any(char.IsUpper) && !u.Any(char.IsLower),
            _ => throw TemplateError.Unsupported($"no test named '{name}'"),
        };
    }

    // Python's value % divisor (floored), for the number tests.
    static double Modulo(object? value, object? divisor)
    {
        double a = Values.ToDouble(value), b = Values.ToDouble(divisor);
        if (b == 0) throw TemplateError.Render("divisibleby(0)");
        return a - b * Math.Floor(a / b);
    }
}

/// <summary>Python methods templates call on strings and dicts (<c>content.strip()</c>, <c>message.get('x')</c>...).</summary>
static class Methods
{
    public static object? Call(string name, object? target, CallArguments args, Evaluator evaluator)
    {
        if (target is string s) return CallString(name, s, args, evaluator);
        if (target is Dictionary<string, object?> dict)
        {
            switch (name)
            {
                case "items": return dict.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList();
                case "keys": return dict.Keys.Cast<object?>().ToList();
                case "values": return dict.Values.ToList();
                case "get":
                    var key = args.Require(0, "key");
                    return key is string k && dict.TryGetValue(k, out var v) ? v : args.Get(1, "default");
            }
        }
        throw TemplateError.Unsupported($"method '{name}' on {Values.TypeName(target)} is not supported");
    }

    static object? CallString(string name, string s, CallArguments args, Evaluator evaluator)
    {
        switch (name)
        {
            case "strip": return Strip(s, args.GetString(0, "chars"), true, true);
            case "lstrip": return Strip(s, args.GetString(0, "chars"), true, false);
            case "rstrip": return Strip(s, args.GetString(0, "chars"), false, true);
            case "upper": return s.ToUpperInvariant();
            case "lower": return s.ToLowerInvariant();
            case "title": return Values.Title(s, wordStarts: null);
            case "capitalize": return Values.Capitalize(s);
            case "startswith" or "endswith":
                var affix = args.Require(0, "prefix");
                var options = affix is List<object?> list ? list.Select(x => Values.ToStr(x)) : [Values.ToStr(affix)];
                return options.Any(o => name == "startswith" ? s.StartsWith(o, StringComparison.Ordinal) : s.EndsWith(o, StringComparison.Ordinal));
            case "split" or "rsplit":
                var sep = args.GetString(0, "sep");
                long max = args.Get(1, "maxsplit", -1L) is long mx ? mx : -1;
                return Split(s, sep, max, name == "rsplit").Cast<object?>().ToList();
            case "splitlines": return s.Split('\n').Select(x => (object?)x.TrimEnd('\r')).ToList();
            case "replace":
                var old = args.GetString(0, "old") ?? "";
                var replacement = args.GetString(1, "new") ?? "";
                long count = args.Get(2, "count", -1L) is long c ? c : -1;
                long occurrences = old.Length == 0 ? s.Length + 1 : (s.Length - s.Replace(old, "").Length) / old.Length;
                if (count >= 0) occurrences = Math.Min(occurrences, count);
                if (s.Length + occurrences * (replacement.Length - old.Length) > evaluator.MaxChars)
                    throw new TemplateError(ChatTemplateErrorKind.Limit, $"replace() would give more than {evaluator.MaxChars} characters");
                return Replace(s, old, replacement, count);
            case "find": return (long)s.IndexOf(args.GetString(0, "sub") ?? "", StringComparison.Ordinal);
            case "rfind": return (long)s.LastIndexOf(args.GetString(0, "sub") ?? "", StringComparison.Ordinal);
            case "count":
                var sub = args.GetString(0, "sub") ?? "";
                return sub.Length == 0 ? s.Length + 1L : (long)((s.Length - s.Replace(sub, "").Length) / sub.Length);
            case "join": return evaluator.Join(s, evaluator.ToList(args.Require(0, "iterable"), "join"));
            case "isdigit": return s.Length > 0 && s.All(char.IsDigit);
            case "isspace": return s.Length > 0 && s.All(char.IsWhiteSpace);
        }
        throw TemplateError.Unsupported($"string method '{name}' is not supported");
    }

    /// <summary>Python's <c>str.strip</c>: whitespace by default, else any of <paramref name="chars"/>.</summary>
    public static string Strip(string s, string? chars, bool left, bool right)
    {
        int start = 0, end = s.Length;
        bool Strippable(char c) => chars == null ? char.IsWhiteSpace(c) : chars.Contains(c);
        if (left) while (start < end && Strippable(s[start])) start++;
        if (right) while (end > start && Strippable(s[end - 1])) end--;
        return s[start..end];
    }

    static List<string> Split(string s, string? sep, long maxSplit, bool fromRight)
    {
        if (sep == "") throw TemplateError.Render("split(): empty separator");
        List<string> pieces;
        if (sep == null)
        {
            // Python: runs of whitespace separate; with maxsplit the rest stays whole (leading whitespace dropped).
            pieces = [];
            int i = 0;
            while (true)
            {
                while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
                if (i >= s.Length) return pieces;
                if (maxSplit >= 0 && pieces.Count == maxSplit)
                {
                    if (fromRight) throw TemplateError.Unsupported("rsplit() with maxsplit and no separator is not supported");
                    pieces.Add(s[i..]);
                    return pieces;
                }
                int start = i;
                while (i < s.Length && !char.IsWhiteSpace(s[i])) i++;
                pieces.Add(s[start..i]);
            }
        }
        pieces = s.Split(sep).ToList();
        if (maxSplit < 0 || pieces.Count <= maxSplit + 1) return pieces;
        int keep = (int)maxSplit;
        return fromRight
            ? [string.Join(sep, pieces[..^keep]), .. pieces[^keep..]]
            : [.. pieces[..keep], string.Join(sep, pieces[keep..])];
    }

    static string Replace(string s, string old, string replacement, long count)
    {
        if (count < 0) return old.Length == 0 ? Interleave(s, replacement) : s.Replace(old, replacement, StringComparison.Ordinal);
        var sb = new StringBuilder();
        int pos = 0;
        for (long n = 0; n < count && old.Length > 0; n++)
        {
            int at = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (at < 0) break;
            sb.Append(s, pos, at - pos).Append(replacement);
            pos = at + old.Length;
        }
        return sb.Append(s, pos, s.Length - pos).ToString();
    }

    static string Interleave(string s, string with) => with + string.Concat(s.Select(c => c + with));
}
