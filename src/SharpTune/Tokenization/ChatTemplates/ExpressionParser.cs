namespace SharpTune.Tokenization.ChatTemplates;

/// <summary>
/// Parses the tokens of one tag into expressions, with Jinja's precedence (lowest first): <c>x if c else y</c>,
/// <c>or</c>, <c>and</c>, <c>not</c>, comparisons and <c>in</c>, <c>+ -</c>, <c>~</c>, <c>* / // %</c>, <c>**</c>,
/// unary <c>- +</c>, then a primary with postfix <c>.attr [key] (call)</c> and <c>| filter</c> / <c>is test</c>.
/// </summary>
sealed partial class ExpressionParser(List<Token> tokens, string source, int maxDepth)
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
}
