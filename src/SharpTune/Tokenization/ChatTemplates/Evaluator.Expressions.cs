using System.Runtime.CompilerServices;

namespace SharpTune.Tokenization.ChatTemplates;

sealed partial class Evaluator
{
    object? Eval(Expr expr)
    {
        Step();
        RuntimeHelpers.EnsureSufficientExecutionStack();
        try
        {
            return EvalCore(expr);
        }
        catch (TemplateError e)
        {
            throw Located(e, expr.Line, expr.Column);  // the innermost expression names the place
        }
    }

    object? EvalCore(Expr expr)
    {
        switch (expr)
        {
            case LiteralExpr literal: return literal.Value;
            case NameExpr name: return Lookup(name.Name);
            case ListExpr list: return list.Items.Select(Eval).ToList();
            case DictExpr dict:
                var result = new Dictionary<string, object?>();
                foreach (var (key, value) in dict.Items)
                {
                    if (Eval(key) is not string k)
                        throw TemplateError.Unsupported("dict literal keys must be strings");
                    result[k] = Eval(value);
                }
                return result;
            case AttributeExpr attribute: return Filters.GetAttribute(Eval(attribute.Target), attribute.Name);
            case IndexExpr index: return GetItem(Eval(index.Target), Eval(index.Key));
            case SliceExpr slice:
                return Slice(Eval(slice.Target), Optional(slice.Start), Optional(slice.Stop), Optional(slice.Step));
            case CallExpr call: return EvalCall(call);
            case FilterExpr filter:
                return CheckSize(Filters.Apply(filter.Name, Eval(filter.Value), EvalArguments(filter.Name, filter.Args), this));
            case TestExpr test:
                var args = EvalArguments(test.Name, test.Args);
                return Tests.Apply(test.Name, Eval(test.Value), args.Positional) != test.Negated;
            case UnaryExpr unary:
                var operand = Eval(unary.Operand);
                return unary.Op switch
                {
                    "not" => !Values.IsTruthy(operand),
                    "-" => operand is long l ? (object)checked(-l) : -Values.ToDouble(operand),
                    _ => operand is long or double ? operand : Values.ToDouble(operand),
                };
            case BinaryExpr { Op: "and" } and:
                var left = Eval(and.Left);
                return Values.IsTruthy(left) ? Eval(and.Right) : left;
            case BinaryExpr { Op: "or" } or:
                var first = Eval(or.Left);
                return Values.IsTruthy(first) ? first : Eval(or.Right);
            case BinaryExpr binary:
                return CheckSize(Arithmetic(binary.Op, Eval(binary.Left), Eval(binary.Right), _options.MaxOutputChars));
            case CompareExpr compare:
                var a = Eval(compare.First);
                foreach (var (op, operandExpr) in compare.Rest)
                {
                    var b = Eval(operandExpr);
                    if (op is "in" or "not in") Charge(b is List<object?> l ? l.Count : b is string s ? s.Length / 64 : 1);
                    if (!Compare(op, a, b)) return false;
                    a = b;
                }
                return true;
            case ConditionalExpr conditional:
                if (Values.IsTruthy(Eval(conditional.Condition))) return Eval(conditional.Then);
                return conditional.Else == null ? new Undefined("conditional without else") : Eval(conditional.Else);
        }
        throw TemplateError.Unsupported($"expression {expr.GetType().Name}");
    }

    object? Optional(Expr? expr) => expr == null ? null : Eval(expr);

    object? EvalCall(CallExpr call)
    {
        if (call.Callee is AttributeExpr method)
        {
            var target = Eval(method.Target);
            if (target is string or Dictionary<string, object?>)
                return CheckSize(Methods.Call(method.Name, target, EvalArguments(method.Name, call.Args), this));
            if (target is Undefined u) throw TemplateError.Render($"'{u.Name}' is undefined, so it has no method '{method.Name}'");
            throw TemplateError.Unsupported($"method '{method.Name}' on {Values.TypeName(target)} is not supported");
        }
        var callee = Eval(call.Callee);
        if (callee is Callable function)
        {
            var args = EvalArguments(function.Name, call.Args);
            return function.Invoke(args.Positional, args.Named);
        }
        if (callee is Undefined missing) throw TemplateError.Render($"'{missing.Name}' is undefined, so it cannot be called");
        throw TemplateError.Render($"{Values.TypeName(callee)} is not callable");
    }

    CallArguments EvalArguments(string callee, Arguments args)
    {
        var named = new Dictionary<string, object?>();
        foreach (var (name, value) in args.Named) named[name] = Eval(value);
        return new CallArguments(callee, args.Positional.Select(Eval).ToList(), named);
    }

    // Large values cost steps in proportion to their size, so copying them in a loop also meets the step limit.
    object? CheckSize(object? value)
    {
        if (value is string str) Charge(str.Length / 1024);
        if (value is List<object?> items) Charge(items.Count / 64);
        if (value is string s && s.Length > _options.MaxOutputChars)
            throw new TemplateError(ChatTemplateErrorKind.Limit, $"a string of {s.Length} characters exceeds the output limit of {_options.MaxOutputChars}");
        if (value is List<object?> l && l.Count > _options.MaxSteps)
            throw new TemplateError(ChatTemplateErrorKind.Limit, $"a list of {l.Count} items exceeds the step limit");
        return value;
    }

    static object? GetItem(object? target, object? key)
    {
        switch (target)
        {
            case Undefined u: throw TemplateError.Render($"'{u.Name}' is undefined, so it has no item {Values.Repr(key)}");
            case Dictionary<string, object?> dict:
                return key is string k && dict.TryGetValue(k, out var v) ? v : new Undefined(Values.ToStr(key));
            case Namespace or LoopInfo when key is string name: return Filters.GetAttribute(target, name);
            case List<object?> list when key is long i:
                if (i < 0) i += list.Count;
                return i >= 0 && i < list.Count ? list[(int)i] : new Undefined($"[{key}]");
            case string s when key is long j:
                var chars = s.EnumerateRunes().Select(r => r.ToString()).ToList();
                if (j < 0) j += chars.Count;
                return j >= 0 && j < chars.Count ? chars[(int)j] : new Undefined($"[{key}]");
            case RangeValue range when key is long r:
                if (r < 0) r += range.Count;
                return r >= 0 && r < range.Count ? range[r] : new Undefined($"[{key}]");
        }
        return new Undefined($"[{Values.Repr(key)}]");
    }

    object? Slice(object? target, object? start, object? stop, object? step)
    {
        long Bound(object? v, string what) => v switch
        {
            long l => l,
            _ => throw TemplateError.Render($"slice {what} must be an integer or none, got {Values.TypeName(v)}"),
        };
        if (target is Undefined u) throw TemplateError.Render($"'{u.Name}' is undefined, so it cannot be sliced");
        List<object?> items = target switch
        {
            string s => s.EnumerateRunes().Select(r => (object?)r.ToString()).ToList(),
            List<object?> or RangeValue => ToList(target, "slice"),
            _ => throw TemplateError.Render($"{Values.TypeName(target)} cannot be sliced"),
        };
        long n = items.Count;
        long st = step is null ? 1 : Bound(step, "step");
        if (st == 0) throw TemplateError.Render("slice step cannot be zero");
        // Python's slice.indices().
        long Clamp(object? v, long fallback, long lower, long upper)
        {
            if (v is null) return fallback;
            long x = Bound(v, "bound");
            if (x < 0) x += n;
            return Math.Clamp(x, lower, upper);
        }
        long from = st > 0 ? Clamp(start, 0, 0, n) : Clamp(start, n - 1, -1, n - 1);
        long to = st > 0 ? Clamp(stop, n, 0, n) : Clamp(stop, -1, -1, n - 1);
        var picked = new List<object?>();
        for (long i = from; st > 0 ? i < to : i > to; i += st) picked.Add(items[(int)i]);
        return target is string ? string.Concat(picked.Cast<string>()) : picked;
    }

    static bool Compare(string op, object? a, object? b) => op switch
    {
        "==" => Values.Equals(a, b),
        "!=" => !Values.Equals(a, b),
        "in" => Contains(b, a),
        "not in" => !Contains(b, a),
        "<" => Values.Compare(a, b, op) < 0,
        "<=" => Values.Compare(a, b, op) <= 0,
        ">" => Values.Compare(a, b, op) > 0,
        _ => Values.Compare(a, b, op) >= 0,
    };

    public static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal)
            : throw TemplateError.Render($"'in <string>' needs a string on the left, got {Values.TypeName(item)}"),
        Dictionary<string, object?> dict => item is string key && dict.ContainsKey(key),
        List<object?> list => list.Any(x => Values.Equals(x, item)),
        RangeValue range => item is long l && range.Has(l),
        Undefined => false,
        _ => throw TemplateError.Render($"'in' needs a string, list or dict on the right, got {Values.TypeName(container)}"),
    };

    public static object? Arithmetic(string op, object? a, object? b, long maxChars = int.MaxValue / 2)
    {
        if (op == "~") return Values.ToStr(a, maxChars) + Values.ToStr(b, maxChars);
        if (a is Undefined || b is Undefined)
        {
            var u = (a as Undefined ?? (Undefined)b!).Name;
            throw TemplateError.Render($"'{u}' is undefined and cannot be used with '{op}'");
        }
        switch (op, a, b)
        {
            case ("+", string x, string y): return x + y;
            case ("+", List<object?> x, List<object?> y): return x.Concat(y).ToList();
            case ("*", string x, long or bool): return Repeat(x, (long)Values.ToDouble(b), maxChars);
            case ("*", long or bool, string x): return Repeat(x, (long)Values.ToDouble(a), maxChars);
            case ("*", List<object?> x, long or bool): return RepeatList(x, (long)Values.ToDouble(b), maxChars);
            case ("*", long or bool, List<object?> x): return RepeatList(x, (long)Values.ToDouble(a), maxChars);
        }
        if (!Values.IsNumber(a) || !Values.IsNumber(b))
            throw TemplateError.Render($"'{op}' is not supported between {Values.TypeName(a)} and {Values.TypeName(b)}");
        bool integers = a is long or bool && b is long or bool;
        double x2 = Values.ToDouble(a), y2 = Values.ToDouble(b);
        if ((op is "/" or "//" or "%") && y2 == 0) throw TemplateError.Render($"division by zero in '{op}'");
        if (!integers)
        {
            return op switch
            {
                "+" => x2 + y2,
                "-" => x2 - y2,
                "*" => x2 * y2,
                "/" => x2 / y2,
                "//" => FloatFloorDiv(x2, y2),
                "%" => FloatMod(x2, y2),
                _ => Math.Pow(x2, y2),
            };
        }
        long p = (long)x2, q = (long)y2;
        try
        {
            return op switch
            {
                "+" => checked(p + q),
                "-" => checked(p - q),
                "*" => checked(p * q),
                "/" => (object)(x2 / y2),
                "//" => FloorDiv(p, q),
                "%" => p - q * FloorDiv(p, q),
                _ => q < 0 ? Math.Pow(x2, y2) : (object)Power(p, q),
            };
        }
        catch (OverflowException)
        {
            throw TemplateError.Render($"integer overflow in '{op}'");
        }
    }

    static string Repeat(string s, long times, long maxChars)
    {
        if (times <= 0 || s.Length == 0) return "";
        if (times > maxChars / s.Length)
            throw new TemplateError(ChatTemplateErrorKind.Limit, $"repeating a string {times} times exceeds the output limit of {maxChars} characters");
        return string.Concat(Enumerable.Repeat(s, (int)times));
    }

    static List<object?> RepeatList(List<object?> items, long times, long maxItems)
    {
        if (times <= 0 || items.Count == 0) return [];
        if (times > maxItems / items.Count)
            throw new TemplateError(ChatTemplateErrorKind.Limit, $"repeating a list {times} times exceeds the size limit");
        return Enumerable.Repeat(items, (int)times).SelectMany(x => x).ToList();
    }

    // Python's float %: fmod, moved onto the divisor's sign.
    static double FloatMod(double x, double y)
    {
        double mod = x % y;
        return mod != 0 && (y < 0) != (mod < 0) ? mod + y : mod;
    }

    // Python's float //, as CPython's float_divmod computes it.
    static double FloatFloorDiv(double x, double y)
    {
        double mod = x % y;
        double div = (x - mod) / y;
        if (mod != 0 && (y < 0) != (mod < 0)) div -= 1.0;
        if (div == 0) return div;
        double floor = Math.Floor(div);
        return div - floor > 0.5 ? floor + 1.0 : floor;
    }

    static long FloorDiv(long p, long q) => p / q - ((p % q != 0) && ((p < 0) != (q < 0)) ? 1 : 0);

    static long Power(long b, long e)
    {
        long result = 1;
        while (e > 0)
        {
            if ((e & 1) == 1) result = checked(result * b);
            e >>= 1;
            if (e > 0) b = checked(b * b);
        }
        return result;
    }
}
