namespace SharpTune.Tokenization.ChatTemplates;

/// <summary>
/// Builds the statement tree from the lexer's parts: <c>if/elif/else</c>, <c>for ... in ... [if ...]</c> with
/// <c>else</c>, <c>set</c> (plain, namespace attribute, block form), <c>break</c>/<c>continue</c> (transformers
/// enables Jinja's loopcontrols), and transformers' <c>{% generation %}</c> marker, whose body renders as is.
/// Anything else (macros, includes, raw, call blocks...) fails with an <see cref="ChatTemplateErrorKind.Unsupported"/> error.
/// </summary>
sealed class TemplateParser
{
    static readonly HashSet<string> UnsupportedTags =
        ["macro", "call", "filter", "raw", "include", "import", "from", "extends", "block", "with", "autoescape", "do"];

    readonly List<Part> _parts;
    readonly string _source;
    readonly int _maxDepth;
    int _index;
    int _depth;
    int _loops;

    TemplateParser(List<Part> parts, string source, int maxDepth)
    {
        _parts = parts;
        _source = source;
        _maxDepth = maxDepth;
    }

    public static List<Node> Parse(string template, string source, int maxDepth)
    {
        var parser = new TemplateParser(TemplateLexer.Lex(template, source), source, maxDepth);
        return parser.ParseBody(null).Body;
    }

    /// <summary>
    /// Parses nodes until a statement whose keyword is in <paramref name="stops"/>. Returns that keyword's token and
    /// the parser positioned after it (so its arguments can be read), or null at the end of the template.
    /// </summary>
    (List<Node> Body, Token? Stop, ExpressionParser? Tag) ParseBody(string[]? stops, Part? opener = null)
    {
        if (++_depth > _maxDepth)
            throw new ChatTemplateException(ChatTemplateErrorKind.Limit, _source, opener?.Line ?? 1, opener?.Column ?? 1,
                $"blocks nested deeper than {_maxDepth} levels");
        try
        {
            var body = new List<Node>();
            while (_index < _parts.Count)
            {
                var part = _parts[_index++];
                switch (part.Kind)
                {
                    case PartKind.Text:
                        if (part.Text.Length > 0) body.Add(new TextNode(part.Text, part.Line, part.Column));
                        break;
                    case PartKind.Output:
                        var expr = new ExpressionParser(part.Tokens, _source, _maxDepth);
                        if (expr.AtEnd) throw expr.Error(expr.Peek, "empty '{{ }}': expected an expression");
                        var value = expr.ParseExpression();
                        expr.ExpectEnd("after the expression in '{{ }}'");
                        body.Add(new OutputNode(value, part.Line, part.Column));
                        break;
                    case PartKind.Statement:
                        var tag = new ExpressionParser(part.Tokens, _source, _maxDepth);
                        var keyword = tag.Peek;
                        if (keyword.Kind != TokenKind.Name) throw tag.Error(keyword, $"expected a statement keyword after '{{%', found {keyword}");
                        if (stops != null && stops.Contains(keyword.Text)) { tag.Next(); return (body, keyword, tag); }
                        if (keyword.Text.StartsWith("end", StringComparison.Ordinal) || keyword.Text is "elif" or "else")
                            throw tag.Error(keyword, stops == null || opener == null
                                ? $"unexpected '{keyword.Text}' with no open block"
                                : $"unexpected '{keyword.Text}': expected {Expected(stops)} to close the '{opener.Tokens[0].Text}' block opened at line {opener.Line}, column {opener.Column}");
                        body.Add(ParseStatement(tag, part));
                        break;
                }
            }
            if (stops != null && opener != null)
                throw new ChatTemplateException(ChatTemplateErrorKind.Syntax, _source, opener.Line, opener.Column,
                    $"'{opener.Tokens[0].Text}' block is never closed: expected {Expected(stops)} before the end of the template");
            return (body, null, null);
        }
        finally { _depth--; }
    }

    static string Expected(string[] stops) => string.Join(" or ", stops.Select(s => $"'{{% {s} %}}'"));

    Node ParseStatement(ExpressionParser tag, Part part)
    {
        var keyword = tag.Next();
        switch (keyword.Text)
        {
            case "if": return ParseIf(tag, part);
            case "for": return ParseFor(tag, part);
            case "set": return ParseSet(tag, part);
            case "break" or "continue":
                if (_loops == 0) throw tag.Error(keyword, $"'{keyword.Text}' outside of a for loop");
                tag.ExpectEnd($"after '{keyword.Text}'");
                return new LoopControlNode(keyword.Text == "break", part.Line, part.Column);
            case "generation":
                tag.ExpectEnd("after 'generation'");
                var (body, _, end) = ParseBody(["endgeneration"], part);
                end!.ExpectEnd("after 'endgeneration'");
                return new IfNode([(new LiteralExpr(true, part.Line, part.Column), body)], null, part.Line, part.Column);
        }
        if (UnsupportedTags.Contains(keyword.Text))
            throw new ChatTemplateException(ChatTemplateErrorKind.Unsupported, _source, keyword.Line, keyword.Column,
                $"the '{{% {keyword.Text} %}}' statement is not supported by this chat template interpreter");
        throw tag.Error(keyword, $"unknown statement '{keyword.Text}' (or a block end with no open block)");
    }

    Node ParseIf(ExpressionParser tag, Part part)
    {
        var branches = new List<(Expr, List<Node>)>();
        var condition = tag.ParseExpression();
        tag.ExpectEnd("after the 'if' condition");
        while (true)
        {
            var (body, stop, next) = ParseBody(["elif", "else", "endif"], part);
            branches.Add((condition, body));
            if (stop!.Value.Text == "elif")
            {
                condition = next!.ParseExpression();
                next.ExpectEnd("after the 'elif' condition");
                continue;
            }
            List<Node>? otherwise = null;
            if (stop.Value.Text == "else")
            {
                next!.ExpectEnd("after 'else'");
                (otherwise, _, next) = ParseBody(["endif"], part);
            }
            next!.ExpectEnd("after 'endif'");
            return new IfNode(branches, otherwise, part.Line, part.Column);
        }
    }

    Node ParseFor(ExpressionParser tag, Part part)
    {
        var targets = new List<string> { tag.ExpectName("after 'for'") };
        while (tag.SkipOp(",")) targets.Add(tag.ExpectName("in the loop targets"));
        if (!tag.SkipName("in")) throw tag.Error(tag.Peek, $"expected 'in' after the loop variable, found {tag.Peek}");
        var iterable = tag.ParseExpression(allowConditional: false);  // a trailing "if" filters the loop
        Expr? filter = tag.SkipName("if") ? tag.ParseExpression() : null;
        if (tag.Peek.IsName("recursive"))
            throw new ChatTemplateException(ChatTemplateErrorKind.Unsupported, _source, tag.Peek.Line, tag.Peek.Column,
                "recursive loops are not supported");
        tag.ExpectEnd("after the 'for' header");
        _loops++;
        var (body, stop, next) = ParseBody(["else", "endfor"], part);
        _loops--;
        List<Node>? otherwise = null;
        if (stop!.Value.Text == "else")
        {
            next!.ExpectEnd("after 'else'");
            (otherwise, _, next) = ParseBody(["endfor"], part);
        }
        next!.ExpectEnd("after 'endfor'");
        return new ForNode(targets, iterable, filter, body, otherwise, part.Line, part.Column);
    }

    Node ParseSet(ExpressionParser tag, Part part)
    {
        string name = tag.ExpectName("after 'set'");
        string? attribute = null;
        if (tag.SkipOp(".")) attribute = tag.ExpectName("after '.' in 'set'");
        if (tag.Peek.Is(","))
            throw new ChatTemplateException(ChatTemplateErrorKind.Unsupported, _source, tag.Peek.Line, tag.Peek.Column,
                "'set' with several targets is not supported");
        if (tag.SkipOp("="))
        {
            var value = tag.ParseExpression();
            tag.ExpectEnd("after the value in 'set'");
            return new SetNode(name, attribute, value, null, part.Line, part.Column);
        }
        tag.ExpectEnd($"after 'set {name}' (expected '=' or a block 'set')");
        var (body, _, end) = ParseBody(["endset"], part);
        end!.ExpectEnd("after 'endset'");
        return new SetNode(name, attribute, null, body, part.Line, part.Column);
    }
}
