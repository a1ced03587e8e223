namespace SharpTune.Tokenization.ChatTemplates;

/// <summary>
/// Parses the tokens of one tag into expressions, with Jinja's precedence (lowest first): <c>x if c else y</c>,
/// <c>or</c>, <c>and</c>, <c>not</c>, comparisons and <c>in</c>, <c>+ -</c>, <c>~</c>, <c>* / // %</c>, <c>**</c>,
/// unary <c>- +</c>, then a primary with postfix <c>.attr [key] (call)</c> and <c>| filter</c> / <c>is test</c>.
/// </summary>
sealed class ExpressionParser(List<Token> tokens, string source, int maxDepth)
{
    static readonly HashSet<string> CompareOps = ["==", "!=", "<", ">", "<=", ">="];
    static readonly HashSet<string> Keywords = ["and", "or", "not", "in", "is", "if", "else"];

    int _pos;
    int _depth;

    public Token Peek => tokens[_pos];

    public Token PeekAt(int ahead) => tokens[Math.Min(_pos + ahead, tokens.Count - 1)];

    public Token Next() => tokens[_pos < tokens.Count - 1 ? _pos++ : _pos];

    public bool AtEnd => Peek.Kind == TokenKind.End;

    public bool SkipOp(string op)
    {
        if (!Peek.Is(op)) return false;
        _pos++;
        return true;
    }

    public bool SkipName(string name)
    {
        if (!Peek.IsName(name)) return false;
        _pos++;
        return true;
    }

    public Token Expect(string op, string context)
    {
        if (!Peek.Is(op)) throw Error(Peek, $"expected '{op}' {context}, found {Peek}");
        return Next();
    }

    public string ExpectName(string context)
    {
        if (Peek.Kind != TokenKind.Name) throw Error(Peek, $"expected a name {context}, found {Peek}");
        return Next().Text;
    }

    public void ExpectEnd(string context)
    {
        if (!AtEnd) throw Error(Peek, $"expected end of tag {context}, found {Peek}");
    }

    public ChatTemplateException Error(Token at, string message) =>
        new(ChatTemplateErrorKind.Syntax, source, at.Line, at.Column, message);

    public Expr ParseExpression(bool allowConditional = true) =>
        Nested(() => allowConditional ? ParseConditional() : ParseOr());

    // Every recursive production goes through here, so hostile nesting fails cleanly instead of overflowing the stack.
    Expr Nested(Func<Expr> parse)
    {
        if (++_depth > maxDepth)
            throw new ChatTemplateException(ChatTemplateErrorKind.Limit, source, Peek.Line, Peek.Column,
                $"expression nested deeper than {maxDepth} levels");
        try { return parse(); }
        finally { _depth--; }
    }

    Expr ParseConditional()
    {
        var expr = ParseOr();
        while (Peek.IsName("if"))
        {
            var at = Next();
            var condition = ParseOr();
            Expr? otherwise = SkipName("else") ? Nested(ParseConditional) : null;
            expr = new ConditionalExpr(condition, expr, otherwise, at.Line, at.Column);
        }
        return expr;
    }

    Expr ParseOr()
    {
        var left = ParseAnd();
        while (Peek.IsName("or")) { var at = Next(); left = new BinaryExpr("or", left, ParseAnd(), at.Line, at.Column); }
        return left;
    }

    Expr ParseAnd()
    {
        var left = ParseNot();
        while (Peek.IsName("and")) { var at = Next(); left = new BinaryExpr("and", left, ParseNot(), at.Line, at.Column); }
        return left;
    }

    Expr ParseNot()
    {
        if (!Peek.IsName("not")) return ParseCompare();
        var at = Next();
        return new UnaryExpr("not", Nested(ParseNot), at.Line, at.Column);
    }

    Expr ParseCompare()
    {
        var first = ParseAdditive();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            string op;
            if (Peek.Kind == TokenKind.Operator && CompareOps.Contains(Peek.Text)) op = Next().Text;
            else if (Peek.IsName("in")) { Next(); op = "in"; }
            else if (Peek.IsName("not") && PeekAt(1).IsName("in")) { Next(); Next(); op = "not in"; }
            else break;
            rest.Add((op, ParseAdditive()));
        }
        return rest.Count == 0 ? first : new CompareExpr(first, rest, first.Line, first.Column);
    }

    Expr ParseAdditive()
    {
        var left = ParseConcat();
        while (Peek.Is("+") || Peek.Is("-"))
        {
            var at = Next();
            left = new BinaryExpr(at.Text, left, ParseConcat(), at.Line, at.Column);
        }
        return left;
    }

    Expr ParseConcat()
    {
        var left = ParseMultiplicative();
        while (Peek.Is("~")) { var at = Next(); left = new BinaryExpr("~", left, ParseMultiplicative(), at.Line, at.Column); }
        return left;
    }

    Expr ParseMultiplicative()
    {
        var left = ParsePower();
        while (Peek.Is("*") || Peek.Is("/") || Peek.Is("//") || Peek.Is("%"))
        {
            var at = Next();
            left = new BinaryExpr(at.Text, left, ParsePower(), at.Line, at.Column);
        }
        return left;
    }

    Expr ParsePower()
    {
        var left = ParseUnary(withFilters: true);
        while (Peek.Is("**")) { var at = Next(); left = new BinaryExpr("**", left, ParseUnary(true), at.Line, at.Column); }
        return left;
    }

    Expr ParseUnary(bool withFilters)
    {
        Expr expr;
        if (Peek.Is("-") || Peek.Is("+"))
        {
            var at = Next();
            expr = new UnaryExpr(at.Text, Nested(() => ParseUnary(withFilters: false)), at.Line, at.Column);
        }
        else expr = ParsePostfix(ParsePrimary());
        return withFilters ? ParseFiltersAndTests(expr) : expr;
    }

    Expr ParsePrimary()
    {
        var token = Next();
        switch (token.Kind)
        {
            case TokenKind.String:
                var text = (string)token.Value!;
                while (Peek.Kind == TokenKind.String) text += (string)Next().Value!;  // adjacent literals join
                return new LiteralExpr(text, token.Line, token.Column);
            case TokenKind.Integer or TokenKind.Float:
                return new LiteralExpr(token.Value, token.Line, token.Column);
            case TokenKind.Name:
                return token.Text switch
                {
                    "true" or "True" => new LiteralExpr(true, token.Line, token.Column),
                    "false" or "False" => new LiteralExpr(false, token.Line, token.Column),
                    "none" or "None" => new LiteralExpr(null, token.Line, token.Column),
                    _ when Keywords.Contains(token.Text) => throw Error(token, $"expected a value, found keyword '{token.Text}'"),
                    _ => new NameExpr(token.Text, token.Line, token.Column),
                };
        }
        if (token.Is("("))
        {
            if (SkipOp(")")) return new ListExpr([], token.Line, token.Column);
            var first = ParseExpression();
            if (Peek.Is(","))
            {
                // A tuple; we represent it as a list.
                var items = new List<Expr> { first };
                while (SkipOp(",") && !Peek.Is(")")) items.Add(ParseExpression());
                first = new ListExpr(items, token.Line, token.Column);
            }
            Expect(")", "to close '('");
            return first;
        }
        if (token.Is("["))
        {
            var items = new List<Expr>();
            while (!Peek.Is("]"))
            {
                items.Add(ParseExpression());
                if (!SkipOp(",")) break;
            }
            Expect("]", "to close the list");
            return new ListExpr(items, token.Line, token.Column);
        }
        if (token.Is("{"))
        {
            var items = new List<(Expr, Expr)>();
            while (!Peek.Is("}"))
            {
                var key = ParseExpression();
                Expect(":", "after a dict key");
                items.Add((key, ParseExpression()));
                if (!SkipOp(",")) break;
            }
            Expect("}", "to close the dict");
            return new DictExpr(items, token.Line, token.Column);
        }
        throw Error(token, $"expected a value, found {token}");
    }

    Expr ParsePostfix(Expr expr)
    {
        while (true)
        {
            if (Peek.Is("."))
            {
                var at = Next();
                var name = Next();
                if (name.Kind is not (TokenKind.Name or TokenKind.Integer)) throw Error(name, $"expected an attribute name after '.', found {name}");
                expr = name.Kind == TokenKind.Integer
                    ? new IndexExpr(expr, new LiteralExpr(name.Value, name.Line, name.Column), at.Line, at.Column)
                    : new AttributeExpr(expr, name.Text, at.Line, at.Column);
            }
            else if (Peek.Is("["))
            {
                var at = Next();
                expr = ParseSubscript(expr, at);
            }
            else if (Peek.Is("("))
            {
                expr = new CallExpr(expr, ParseArguments(), expr.Line, expr.Column);
            }
            else return expr;
        }
    }

    Expr ParseSubscript(Expr target, Token at)
    {
        Expr? start = Peek.Is(":") ? null : ParseExpression();
        if (start != null && SkipOp("]")) return new IndexExpr(target, start, at.Line, at.Column);
        Expect(":", "in a subscript");
        Expr? stop = Peek.Is(":") || Peek.Is("]") ? null : ParseExpression();
        Expr? step = null;
        if (SkipOp(":") && !Peek.Is("]")) step = ParseExpression();
        Expect("]", "to close the subscript");
        return new SliceExpr(target, start, stop, step, at.Line, at.Column);
    }

    public Arguments ParseArguments()
    {
        Expect("(", "to open the argument list");
        var positional = new List<Expr>();
        var named = new List<(string, Expr)>();
        while (!Peek.Is(")"))
        {
            if (Peek.Kind == TokenKind.Name && PeekAt(1).Is("="))
            {
                string name = Next().Text;
                Next();
                named.Add((name, ParseExpression()));
            }
            else
            {
                if (named.Count > 0) throw Error(Peek, "positional argument after a named argument");
                positional.Add(ParseExpression());
            }
            if (!SkipOp(",")) break;
        }
        Expect(")", "to close the argument list");
        return new Arguments(positional, named);
    }

    Expr ParseFiltersAndTests(Expr expr)
    {
        while (true)
        {
            if (Peek.Is("|"))
            {
                Next();
                var name = Peek;
                string filter = ExpectName("after '|'");
                if (!Filters.IsKnown(filter))
                    throw new ChatTemplateException(ChatTemplateErrorKind.Unsupported, source, name.Line, name.Column,
                        $"no filter named '{filter}' (supported: {Filters.KnownList})");
                var args = Peek.Is("(") ? ParseArguments() : Arguments.None;
                expr = new FilterExpr(expr, filter, args, name.Line, name.Column);
            }
            else if (Peek.IsName("is"))
            {
                Next();
                bool negated = SkipName("not");
                var name = Peek;
                string test = ExpectName("after 'is'");
                if (!Tests.IsKnown(test))
                    throw new ChatTemplateException(ChatTemplateErrorKind.Unsupported, source, name.Line, name.Column,
                        $"no test named '{test}' (supported: {Tests.KnownList})");
                Arguments args = Arguments.None;
                if (Peek.Is("(")) args = ParseArguments();
                else if (Peek.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float)
                    args = new Arguments([ParsePrimary()], []);
                expr = new TestExpr(expr, test, negated, args, name.Line, name.Column);
            }
            else return expr;
        }
    }
}
