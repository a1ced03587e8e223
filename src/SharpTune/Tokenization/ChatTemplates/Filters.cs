using System.Globalization;

namespace SharpTune.Tokenization.ChatTemplates;

/// <summary>Positional and named arguments of a filter, test, method or function call, already evaluated.</summary>
sealed class CallArguments(string callee, List<object?> positional, Dictionary<string, object?> named)
{
    public List<object?> Positional { get; } = positional;

    public Dictionary<string, object?> Named { get; } = named;

    public int Count => Positional.Count + Named.Count;

    /// <summary>The argument at <paramref name="index"/> or named <paramref name="name"/>, else the fallback.</summary>
    public object? Get(int index, string name, object? fallback = null)
    {
        if (index < Positional.Count) return Positional[index];
        return Named.TryGetValue(name, out var value) ? value : fallback;
    }

    public object? Require(int index, string name) =>
        index < Positional.Count || Named.ContainsKey(name) ? Get(index, name)
            : throw TemplateError.Render($"{callee}() is missing its '{name}' argument");

    public string? GetString(int index, string name)
    {
        var value = Get(index, name);
        return value is null or Undefined ? null : value as string
            ?? throw TemplateError.Render($"{callee}(): '{name}' must be a string, got {Values.TypeName(value)}");
    }

    public void AtMost(int count)
    {
        if (Count > count) throw TemplateError.Render($"{callee}() takes at most {count} argument(s), got {Count}");
    }
}

/// <summary>The filters (<c>x | name(args)</c>) chat templates use; an unknown name fails when the template is parsed.</summary>
static class Filters
{
    static readonly string[] Known =
    [
        "abs", "capitalize", "count", "d", "default", "first", "float", "int", "items", "join", "last", "length",
        "list", "lower", "map", "reject", "rejectattr", "replace", "reverse", "safe", "select", "selectattr", "string",
        "sum", "title", "tojson", "trim", "unique", "upper",
    ];

    public static string KnownList => string.Join(", ", Known);

    public static bool IsKnown(string name) => Known.Contains(name);

    public static object? Apply(string name, object? value, CallArguments args, Evaluator evaluator)
    {
        switch (name)
        {
            case "trim": args.AtMost(1); return Methods.Strip(Str(value, name), args.GetString(0, "chars"), true, true);
            case "upper": return Str(value, name).ToUpperInvariant();
            case "lower": return Str(value, name).ToLowerInvariant();
            case "capitalize": return Values.Capitalize(Str(value, name));
            case "title": return Values.Title(Str(value, name), wordStarts: "-({[<");  // Jinja's words, not Python's
            case "string": return Values.ToStr(value, evaluator.MaxChars);
            case "safe": return value;
            case "length" or "count":
                return value switch
                {
                    string s => (long)s.EnumerateRunes().Count(),
                    List<object?> l => (long)l.Count,
                    Dictionary<string, object?> d => (long)d.Count,
                    RangeValue r => r.Count,
                    Undefined => 0L,
                    _ => throw TemplateError.Render($"length of {Values.TypeName(value)} is not defined"),
                };
            case "default" or "d":
                bool boolean = Values.IsTruthy(args.Get(1, "boolean", false));
                bool useDefault = value is Undefined || (boolean && !Values.IsTruthy(value));
                return useDefault ? args.Get(0, "default_value", "") : value;
            case "first": return evaluator.ToList(value, name) is { Count: > 0 } f ? f[0] : new Undefined("first item");
            case "last": return evaluator.ToList(value, name) is { Count: > 0 } l2 ? l2[^1] : new Undefined("last item");
            case "list": return evaluator.ToList(value, name);
            case "reverse":
                if (value is string rs) return new string(rs.Reverse().ToArray());
                var reversed = evaluator.ToList(value, name);
                reversed.Reverse();
                return reversed;
            case "unique":
                var unique = new List<object?>();
                foreach (var item in evaluator.ToList(value, name))
                {
                    evaluator.Charge(unique.Count);  // quadratic, so it counts every comparison
                    if (!unique.Any(u => Values.Equals(u, item))) unique.Add(item);
                }
                return unique;
            case "sum":
                return evaluator.ToList(value, name).Aggregate((object?)0L, (acc, x) => Evaluator.Arithmetic("+", acc, x));
            case "join":
                var attribute = args.GetString(1, "attribute");
                var items = evaluator.ToList(value, name).Select(x => attribute == null ? x : GetAttribute(x, attribute));
                return evaluator.Join(args.GetString(0, "d") ?? "", items);
            case "items":
                if (value is Undefined) return new List<object?>();
                if (value is not Dictionary<string, object?> dict) throw TemplateError.Render($"items of {Values.TypeName(value)}: expected a dict");
                return dict.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList();
            case "tojson":
                foreach (var key in args.Named.Keys)
                    if (key != "indent" && key != "ensure_ascii" && key != "sort_keys")
                        throw TemplateError.Unsupported($"tojson({key}=...) is not supported");
                if (Values.IsTruthy(args.Named.GetValueOrDefault("ensure_ascii")) || Values.IsTruthy(args.Named.GetValueOrDefault("sort_keys")))
                    throw TemplateError.Unsupported("tojson with ensure_ascii or sort_keys is not supported");
                var indent = args.Get(0, "indent");
                return PythonJson.Dumps(value, indent is null ? null : (int)Values.ToDouble(indent), evaluator.MaxChars);
            case "int" or "float" when value is Undefined u:
                throw TemplateError.Render($"'{u.Name}' is undefined and cannot be converted by '{name}'");
            case "int":
                return value switch
                {
                    long or bool => (long)Values.ToDouble(value),
                    double dv => (long)Math.Truncate(dv),
                    string s2 when long.TryParse(s2.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long parsed) => parsed,
                    _ => args.Get(0, "default", 0L),
                };
            case "float":
                return value switch
                {
                    long or bool or double => Values.ToDouble(value),
                    string s3 when double.TryParse(s3.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed) => parsed,
                    _ => args.Get(0, "default", 0.0),
                };
            case "abs": return value is long or bool ? Math.Abs((long)Values.ToDouble(value)) : (object)Math.Abs(Values.ToDouble(value));
            case "replace":
                return Methods.Call("replace", Str(value, name), args, evaluator);
            case "selectattr" or "rejectattr":
                var attr = args.GetString(0, "attribute") ?? throw TemplateError.Render($"{name}() needs an attribute name");
                return Select(evaluator.ToList(value, name), args, 1, name == "selectattr", x => GetAttribute(x, attr));
            case "select" or "reject":
                return Select(evaluator.ToList(value, name), args, 0, name == "select", x => x);
            case "map":
                var source = evaluator.ToList(value, name);
                if (args.Named.TryGetValue("attribute", out var mapAttr))
                {
                    var fallback = args.Named.GetValueOrDefault("default", new Undefined("default"));
                    return source.Select(x => GetAttribute(x, Values.ToStr(mapAttr)) is Undefined && fallback is not Undefined
                        ? fallback : GetAttribute(x, Values.ToStr(mapAttr))).ToList();
                }
                var filter = args.GetString(0, "filter") ?? throw TemplateError.Render("map() needs a filter name or attribute=");
                if (!IsKnown(filter)) throw TemplateError.Unsupported($"map(): no filter named '{filter}'");
                var rest = new CallArguments(filter, args.Positional.Skip(1).ToList(), []);
                return source.Select(x => Apply(filter, x, rest, evaluator)).ToList();
        }
        throw TemplateError.Unsupported($"no filter named '{name}'");
    }

    static List<object?> Select(List<object?> items, CallArguments args, int testIndex, bool keep, Func<object?, object?> pick)
    {
        string? test = args.Positional.Count > testIndex ? args.Positional[testIndex] as string : null;
        if (test != null && !Tests.IsKnown(test)) throw TemplateError.Unsupported($"no test named '{test}'");
        var testArgs = args.Positional.Skip(testIndex + 1).ToList();
        return items.Where(x =>
        {
            var v = pick(x);
            bool passed = test == null ? Values.IsTruthy(v) : Tests.Apply(test, v, testArgs);
            return passed == keep;
        }).ToList();
    }

    /// <summary>Jinja's <c>environment.getattr</c> for plain data: dict key, namespace or loop attribute; else undefined.</summary>
    public static object? GetAttribute(object? target, string name) => target switch
    {
        Dictionary<string, object?> dict => dict.TryGetValue(name, out var v) ? v : new Undefined(name),
        Namespace ns => ns.Attributes.TryGetValue(name, out var v) ? v : new Undefined(name),
        LoopInfo loop => loop.Get(name),
        Undefined u => throw TemplateError.Render($"'{u.Name}' is undefined, so it has no attribute '{name}'"),
        _ => new Undefined(name),
    };

    static string Str(object? value, string filter) => value switch
    {
        string s => s,
        Undefined => "",
        _ => Values.ToStr(value),
    };
}
