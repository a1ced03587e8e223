namespace SharpTune.Tokenization.ChatTemplates;

// Primaries (literals, names, lists, dicts, parentheses), postfix access and calls, filters and tests.
sealed partial class ExpressionParser
{
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
