using SharpTune.Tokenization.ChatTemplates;

namespace SharpTune.Tests.Tokenization.ChatTemplates;

/// <summary>Errors name the template source, line and column, and say what was expected; limits stop hostile templates.</summary>
public class ChatTemplateErrorTests
{
    static ChatTemplateException ParseError(string template) =>
        Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(template, "model/tokenizer_config.json"));

    static ChatTemplateException RenderError(string template, ChatTemplateOptions? options = null) =>
        Assert.Throws<ChatTemplateException>(() =>
            ChatTemplate.Parse(template, "tpl", options).Render([new("user", "hi")], true, "<s>", "</s>"));

    [Fact]
    public void Unclosed_block_names_the_opening_tag_and_the_expected_end()
    {
        var error = ParseError("ok\n  {% if true %}x\n{% for m in messages %}{{ m }}{% endfor %}");
        Assert.Equal(ChatTemplateErrorKind.Syntax, error.Kind);
        Assert.Equal((2, 3), (error.Line, error.Column));
        Assert.Equal("model/tokenizer_config.json:2:3: syntax error: 'if' block is never closed: expected '{% elif %}' or '{% else %}' or '{% endif %}' before the end of the template",
            error.Message);
    }

    [Theory]
    [InlineData("{{ 'a' ", 1, 1, "'{{' is never closed: expected '}}'")]
    [InlineData("x{% if %}{% endif %}", 1, 8, "expected a value, found end of tag")]
    [InlineData("{% for x messages %}{% endfor %}", 1, 10, "expected 'in' after the loop variable, found 'messages'")]
    [InlineData("{% endif %}", 1, 4, "unexpected 'endif' with no open block")]
    [InlineData("{% for x in y %}{% endif %}", 1, 20, "unexpected 'endif': expected '{% else %}' or '{% endfor %}' to close the 'for' block opened at line 1, column 1")]
    [InlineData("{{ a b }}", 1, 6, "expected end of tag after the expression in '{{ }}', found 'b'")]
    [InlineData("{{ 'abc }}", 1, 4, "string literal is never closed")]
    [InlineData("{# no end", 1, 1, "comment '{#' is never closed")]
    [InlineData("{{ f(a=1, 2) }}", 1, 11, "positional argument after a named argument")]
    [InlineData("{{ x ? 1 }}", 1, 6, "unexpected character '?'")]
    [InlineData("{% frobnicate %}", 1, 4, "unknown statement 'frobnicate'")]
    [InlineData("{% if true %}{% break %}{% endif %}", 1, 17, "'break' outside of a for loop")]
    public void Syntax_errors_say_where_and_what_was_expected(string template, int line, int column, string expected)
    {
        var error = ParseError(template);
        Assert.Equal(ChatTemplateErrorKind.Syntax, error.Kind);
        Assert.Equal((line, column), (error.Line, error.Column));
        Assert.Contains(expected, error.Message);
        Assert.StartsWith($"model/tokenizer_config.json:{line}:{column}: ", error.Message);
    }

    [Theory]
    [InlineData("line one\n  {{ x | frobnicate }}", 2, 10, "no filter named 'frobnicate'")]
    [InlineData("{% if x is shiny %}{% endif %}", 1, 12, "no test named 'shiny'")]
    [InlineData("{% macro m() %}{% endmacro %}", 1, 4, "the '{% macro %}' statement is not supported")]
    [InlineData("{% include 'other.jinja' %}", 1, 4, "the '{% include %}' statement is not supported")]
    [InlineData("{% for x in xs recursive %}{% endfor %}", 1, 16, "recursive loops are not supported")]
    [InlineData("{% set a, b = 1, 2 %}", 1, 9, "'set' with several targets is not supported")]
    public void Unsupported_constructs_fail_at_parse_time(string template, int line, int column, string expected)
    {
        var error = ParseError(template);
        Assert.Equal(ChatTemplateErrorKind.Unsupported, error.Kind);
        Assert.Equal((line, column), (error.Line, error.Column));
        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("{{ 'a'.zfill(3) }}", "string method 'zfill' is not supported")]
    [InlineData("{{ messages.append(1) }}", "method 'append' on list is not supported")]
    [InlineData("{{ x | tojson(sort_keys=true) }}", "tojson with ensure_ascii or sort_keys is not supported")]
    [InlineData("{{ loop_is_not_here.cycle }}", "'loop_is_not_here' is undefined")]
    [InlineData("{% for m in messages %}{{ loop.cycle('a', 'b') }}{% endfor %}", "method 'cycle' on loop is not supported")]
    [InlineData("{{ strftime_now('%Q') }}", "strftime directive '%Q' is not supported")]
    [InlineData("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns | tojson }}", "tojson cannot serialize namespace")]
    public void Unsupported_at_render_time_is_an_error_not_wrong_output(string template, string expected)
    {
        var error = RenderError(template);
        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("{{ messages[0].content + nothing }}", 1, 24, "'nothing' is undefined and cannot be used with '+'")]
    [InlineData("{{ nothing.role }}", 1, 11, "'nothing' is undefined, so it has no attribute 'role'")]
    [InlineData("\n{{ messages[5]['role'] }}", 2, 15, "is undefined, so it has no item 'role'")]
    [InlineData("{{ 1 + 'a' }}", 1, 6, "'+' is not supported between integer and string")]
    [InlineData("{{ 1 // 0 }}", 1, 6, "division by zero")]
    [InlineData("{{ {'a': 1}[1:] }}", 1, 12, "dict cannot be sliced")]
    [InlineData("{{ nothing | int }}", 1, 14, "'nothing' is undefined and cannot be converted by 'int'")]
    [InlineData("{% set x = 1 %}{% set x.a = 2 %}", 1, 16, "cannot set 'x.a': 'x' is not a namespace()")]
    [InlineData("{{ nope() }}", 1, 4, "'nope' is undefined, so it cannot be called")]
    [InlineData("{% for a, b in [[1, 2, 3]] %}{% endfor %}", 1, 1, "cannot unpack 3 values into 2 loop variables")]
    public void Render_errors_name_the_expression(string template, int line, int column, string expected)
    {
        var error = RenderError(template);
        Assert.Equal(ChatTemplateErrorKind.Render, error.Kind);
        Assert.Equal((line, column), (error.Line, error.Column));
        Assert.Contains(expected, error.Message);
        Assert.StartsWith($"tpl:{line}:{column}: ", error.Message);
    }

    [Fact]
    public void Raise_exception_is_a_clear_error_with_the_templates_message()
    {
        var error = RenderError("{% if messages[0].role != 'system' %}\n  {{ raise_exception('System role is required!') }}\n{% endif %}");
        Assert.Equal(ChatTemplateErrorKind.Raised, error.Kind);
        Assert.Equal("System role is required!", error.Detail);
        Assert.Equal("tpl:2:6: template raised: System role is required!", error.Message);
    }

    [Fact]
    public void Step_limit_stops_a_billion_iterations()
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var error = RenderError("{% for i in range(10**9) %}{% endfor %}");
        Assert.Equal(ChatTemplateErrorKind.Limit, error.Kind);
        Assert.Contains("more than 2000000 steps", error.Message);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"took {watch.Elapsed}");
    }

    [Theory]
    [InlineData("{{ range(10**9) | list }}", "exceeds the step limit")]
    [InlineData("{% for i in range(10**9) if i > 5 %}{% endfor %}", "exceeds the step limit")]
    [InlineData("{{ 'a' * 10**9 }}", "exceeds the output limit")]
    [InlineData("{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}", "output would exceed 100000 characters")]
    [InlineData("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "exceeds the output limit")]
    [InlineData("{% set s = 'x' * 99000 %}{% for i in range(10**6) %}{% set t = s ~ '' %}{% endfor %}", "more than 2000000 steps")]
    [InlineData("{{ range(3000) | unique | list }}", "more than 2000000 steps")]
    [InlineData("{{ ','.join(range(10**9)) }}", "exceeds the step limit")]
    [InlineData("{{ ['x' * 1000] * 1000 }}", "printing a value takes more than 100000 characters")]
    [InlineData("{{ ('a' * 1000).replace('a', 'b' * 1000) }}", "replace() would give more than 100000 characters")]
    [InlineData("{{ [[[[[1]]]]] | tojson(indent=30000) }}", "tojson output exceeds 100000 characters")]
    public void Size_limits_stop_runaway_templates(string template, string expected)
    {
        var error = RenderError(template, new ChatTemplateOptions { MaxOutputChars = 100_000 });
        Assert.Equal(ChatTemplateErrorKind.Limit, error.Kind);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void Deep_nesting_is_refused_with_a_limit_error_instead_of_a_stack_overflow()
    {
        var expressions = ParseError("{{ " + new string('(', 5000) + "1" + new string(')', 5000) + " }}");
        Assert.Equal(ChatTemplateErrorKind.Limit, expressions.Kind);
        Assert.Contains("nested deeper than 100 levels", expressions.Message);

        var blocks = ParseError(string.Concat(Enumerable.Repeat("{% if true %}", 500)) + string.Concat(Enumerable.Repeat("{% endif %}", 500)));
        Assert.Equal(ChatTemplateErrorKind.Limit, blocks.Kind);
        Assert.Contains("blocks nested deeper than 100 levels", blocks.Message);

        // A long left-leaning chain parses without recursion but would evaluate 200,000 frames deep.
        var chain = RenderError("{{ 1" + string.Concat(Enumerable.Repeat(" + 1", 200_000)) + " }}");
        Assert.Equal(ChatTemplateErrorKind.Limit, chain.Kind);
        Assert.Contains("nests too deeply to evaluate", chain.Message);
    }

    [Fact]
    public void Bad_extra_values_and_options_are_argument_errors()
    {
        var template = ChatTemplate.Parse("{{ x }}", "t");
        var error = Assert.Throws<ArgumentException>(() =>
            template.Render([], false, null, null, new Dictionary<string, object?> { ["x"] = new object() }));
        Assert.Contains("extra variable 'x'", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ChatTemplate.Parse("x", "t", new ChatTemplateOptions { MaxSteps = 0 }));
    }
}
