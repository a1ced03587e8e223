using System.Text;

namespace SharpTune.Tokenization.ChatTemplates;

/// <summary>
/// Runs a parsed template. Scoping follows Jinja: a <c>for</c> body is its own scope (a <c>set</c> inside it is
/// gone after the loop, which is why templates use <c>namespace()</c>), <c>if</c> bodies are not. Every node
/// evaluated and every item iterated costs a step; the step, output and depth limits stop hostile templates.
/// </summary>
sealed partial class Evaluator
{
    enum Flow { Normal, Break, Continue }

    readonly string _source;
    readonly ChatTemplateOptions _options;
    readonly List<Dictionary<string, object?>> _frames = [];
    readonly StringBuilder _output = new();
    long _steps;
    Node? _current;

    public Evaluator(string source, ChatTemplateOptions options, Dictionary<string, object?> globals)
    {
        _source = source;
        _options = options;
        _frames.Add(Builtins());
        _frames.Add(globals);
    }

    public string Render(List<Node> body)
    {
        _frames.Add([]);
        try
        {
            Execute(body);
        }
        catch (TemplateError e)
        {
            throw Located(e, _current?.Line ?? 1, _current?.Column ?? 1);
        }
        catch (InsufficientExecutionStackException)
        {
            throw new ChatTemplateException(ChatTemplateErrorKind.Limit, _source, _current?.Line ?? 1, _current?.Column ?? 1,
                "the template nests too deeply to evaluate");
        }
        return _output.ToString();
    }

    Flow Execute(List<Node> nodes)
    {
        foreach (var node in nodes)
        {
            _current = node;
            Step();
            switch (node)
            {
                case TextNode text:
                    Write(text.Text);
                    break;
                case OutputNode output:
                    Write(Values.ToStr(Eval(output.Value), _options.MaxOutputChars));
                    break;
                case IfNode branch:
                    var chosen = branch.Else;
                    foreach (var (condition, body) in branch.Branches)
                        if (Values.IsTruthy(Eval(condition))) { chosen = body; break; }
                    if (chosen != null && Execute(chosen) is var flow and not Flow.Normal) return flow;
                    break;
                case ForNode loop:
                    ExecuteFor(loop);
                    break;
                case SetNode set:
                    ExecuteSet(set);
                    break;
                case LoopControlNode control:
                    return control.IsBreak ? Flow.Break : Flow.Continue;
            }
        }
        return Flow.Normal;
    }

    void ExecuteFor(ForNode loop)
    {
        var iterable = Eval(loop.Iterable);
        long count;
        Func<long, object?> at;
        if (loop.Filter == null && iterable is RangeValue range)
        {
            (count, at) = (range.Count, i => range[i]);  // lazy: range(10**9) runs into the step limit, not memory
        }
        else
        {
            var items = ToList(iterable, "for loop");
            if (loop.Filter != null)
            {
                items = items.Where(item =>
                {
                    _frames.Add([]);
                    try { Bind(loop, item); return Values.IsTruthy(Eval(loop.Filter)); }
                    finally { _frames.RemoveAt(_frames.Count - 1); }
                }).ToList();
            }
            (count, at) = (items.Count, i => items[(int)i]);
        }

        var info = new LoopInfo { Length = count };
        var frame = new Dictionary<string, object?>();  // one scope per iteration; the dictionary is reused
        _frames.Add(frame);
        try
        {
            for (long i = 0; i < count; i++)
            {
                Step();
                info.Index0 = i;
                info.Previous = i > 0 ? at(i - 1) : null;
                info.Next = i + 1 < count ? at(i + 1) : null;
                frame.Clear();
                frame["loop"] = info;
                Bind(loop, at(i));
                if (Execute(loop.Body) == Flow.Break) break;
                _current = loop;
            }
        }
        finally { _frames.RemoveAt(_frames.Count - 1); }
        if (count == 0 && loop.Else != null) Execute(loop.Else);
    }

    void Bind(ForNode loop, object? item)
    {
        var frame = _frames[^1];
        if (loop.Targets.Count == 1) { frame[loop.Targets[0]] = item; return; }
        var parts = ToList(item, "loop unpacking");
        if (parts.Count != loop.Targets.Count)
            throw TemplateError.Render($"cannot unpack {parts.Count} values into {loop.Targets.Count} loop variables");
        for (int i = 0; i < parts.Count; i++) frame[loop.Targets[i]] = parts[i];
    }

    void ExecuteSet(SetNode set)
    {
        object? value;
        if (set.Value != null) value = Eval(set.Value);
        else
        {
            // Block set: capture the body's output.
            int mark = _output.Length;
            Execute(set.Body!);
            value = _output.ToString(mark, _output.Length - mark);
            _output.Length = mark;
        }
        if (set.Attribute == null) { _frames[^1][set.Name] = value; return; }
        if (Lookup(set.Name) is not Namespace ns)
            throw TemplateError.Render($"cannot set '{set.Name}.{set.Attribute}': '{set.Name}' is not a namespace()");
        ns.Attributes[set.Attribute] = value;
    }

    object? Lookup(string name)
    {
        for (int i = _frames.Count - 1; i >= 0; i--)
            if (_frames[i].TryGetValue(name, out var value)) return value;
        return new Undefined(name);
    }

    void Write(string text)
    {
        if (_output.Length + text.Length > _options.MaxOutputChars)
            throw new TemplateError(ChatTemplateErrorKind.Limit, $"output would exceed {_options.MaxOutputChars} characters");
        _output.Append(text);
    }

    /// <summary>Most characters any string (and the output) may have.</summary>
    public long MaxChars => _options.MaxOutputChars;

    void Step() => Charge(1);

    /// <summary>Counts work against the step limit: one per node or item, more for work proportional to sizes.</summary>
    public void Charge(long steps)
    {
        _steps += steps;
        if (_steps > _options.MaxSteps)
            throw new TemplateError(ChatTemplateErrorKind.Limit, $"rendering took more than {_options.MaxSteps} steps");
    }

    /// <summary><c>separator.join(items)</c>, refused before it is built if it would pass the size limit.</summary>
    public string Join(string separator, IEnumerable<object?> items)
    {
        var parts = items.Select(x => Values.ToStr(x, MaxChars)).ToList();
        long total = parts.Sum(p => (long)p.Length) + (long)separator.Length * Math.Max(0, parts.Count - 1);
        if (total > MaxChars)
            throw new TemplateError(ChatTemplateErrorKind.Limit, $"joining gives {total} characters, over the limit of {MaxChars}");
        Charge(total / 1024);
        return string.Join(separator, parts);
    }

    /// <summary>The items of an iterable as a list, one step per item (so huge ranges stop at the step limit).</summary>
    public List<object?> ToList(object? value, string what)
    {
        if (value is List<object?> list) { Charge(list.Count + 1); return list; }
        if (value is RangeValue range && range.Count > _options.MaxSteps - _steps)
            throw new TemplateError(ChatTemplateErrorKind.Limit, $"{what}: a range of {range.Count} items exceeds the step limit");
        var result = new List<object?>();
        foreach (var item in Values.Iterate(value)) { Step(); result.Add(item); }
        return result;
    }

    ChatTemplateException Located(TemplateError e, int line, int column) => new(e.Kind, _source, line, column, e.Message);

    Dictionary<string, object?> Builtins() => new()
    {
        ["range"] = new Callable("range", (args, _) => MakeRange(args)),
        ["namespace"] = new Callable("namespace", (args, kwargs) =>
        {
            var ns = new Namespace();
            foreach (var arg in args)
                if (arg is Dictionary<string, object?> d) foreach (var kv in d) ns.Attributes[kv.Key] = kv.Value;
            foreach (var kv in kwargs) ns.Attributes[kv.Key] = kv.Value;
            return ns;
        }),
        ["dict"] = new Callable("dict", (_, kwargs) => new Dictionary<string, object?>(kwargs)),
        ["raise_exception"] = new Callable("raise_exception", (args, _) =>
            throw new TemplateError(ChatTemplateErrorKind.Raised, args.Count > 0 ? Values.ToStr(args[0]) : "raise_exception() called")),
        ["strftime_now"] = new Callable("strftime_now", (args, _) =>
            Strftime.Format(_options.Clock.GetLocalNow().DateTime, args.Count > 0 ? Values.ToStr(args[0]) : "")),
    };

    static RangeValue MakeRange(List<object?> args)
    {
        if (args.Count is 0 or > 3 || args.Any(a => a is not long))
            throw TemplateError.Render("range() takes 1 to 3 integer arguments");
        var n = args.Cast<long>().ToArray();
        var (start, stop, step) = n.Length switch
        {
            1 => (0L, n[0], 1L),
            2 => (n[0], n[1], 1L),
            _ => (n[0], n[1], n[2]),
        };
        if (step == 0) throw TemplateError.Render("range() step must not be zero");
        return new RangeValue(start, stop, step);
    }
}
