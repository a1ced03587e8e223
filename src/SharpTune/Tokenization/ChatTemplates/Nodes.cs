namespace SharpTune.Tokenization.ChatTemplates;

// The syntax tree. Every node keeps the template line and column it came from, so render errors can name them.

abstract record Node(int Line, int Column);

sealed record TextNode(string Text, int Line, int Column) : Node(Line, Column);

sealed record OutputNode(Expr Value, int Line, int Column) : Node(Line, Column);

sealed record IfNode(List<(Expr Condition, List<Node> Body)> Branches, List<Node>? Else, int Line, int Column)
    : Node(Line, Column);

sealed record ForNode(
    List<string> Targets, Expr Iterable, Expr? Filter, List<Node> Body, List<Node>? Else, int Line, int Column)
    : Node(Line, Column);

/// <summary><c>{% set name = value %}</c>, <c>{% set ns.attr = value %}</c> (Attribute set), or the block form.</summary>
sealed record SetNode(string Name, string? Attribute, Expr? Value, List<Node>? Body, int Line, int Column)
    : Node(Line, Column);

sealed record LoopControlNode(bool IsBreak, int Line, int Column) : Node(Line, Column);

abstract record Expr(int Line, int Column);

sealed record LiteralExpr(object? Value, int Line, int Column) : Expr(Line, Column);

sealed record NameExpr(string Name, int Line, int Column) : Expr(Line, Column);

sealed record ListExpr(List<Expr> Items, int Line, int Column) : Expr(Line, Column);

sealed record DictExpr(List<(Expr Key, Expr Value)> Items, int Line, int Column) : Expr(Line, Column);

sealed record AttributeExpr(Expr Target, string Name, int Line, int Column) : Expr(Line, Column);

sealed record IndexExpr(Expr Target, Expr Key, int Line, int Column) : Expr(Line, Column);

sealed record SliceExpr(Expr Target, Expr? Start, Expr? Stop, Expr? Step, int Line, int Column) : Expr(Line, Column);

sealed record Arguments(List<Expr> Positional, List<(string Name, Expr Value)> Named)
{
    public static readonly Arguments None = new([], []);
}

sealed record CallExpr(Expr Callee, Arguments Args, int Line, int Column) : Expr(Line, Column);

sealed record FilterExpr(Expr Value, string Name, Arguments Args, int Line, int Column) : Expr(Line, Column);

sealed record TestExpr(Expr Value, string Name, bool Negated, Arguments Args, int Line, int Column) : Expr(Line, Column);

/// <summary>Unary <c>not</c>, <c>-</c>, <c>+</c>.</summary>
sealed record UnaryExpr(string Op, Expr Operand, int Line, int Column) : Expr(Line, Column);

/// <summary>Arithmetic, <c>~</c>, <c>and</c>, <c>or</c>.</summary>
sealed record BinaryExpr(string Op, Expr Left, Expr Right, int Line, int Column) : Expr(Line, Column);

/// <summary>A comparison chain as Python reads it: <c>a &lt; b &lt;= c</c> is <c>a &lt; b and b &lt;= c</c>.</summary>
sealed record CompareExpr(Expr First, List<(string Op, Expr Operand)> Rest, int Line, int Column) : Expr(Line, Column);

sealed record ConditionalExpr(Expr Condition, Expr Then, Expr? Else, int Line, int Column) : Expr(Line, Column);
