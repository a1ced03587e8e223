using SharpTune.Tokenization.ChatTemplates;

namespace SharpTune.Tests.Tokenization.ChatTemplates;

/// <summary>The Jinja subset, one construct at a time; expected values are what Jinja2 (as transformers runs it) prints.</summary>
public class ChatTemplateLanguageTests
{
    static readonly ChatMessage[] Messages = [new("system", "S"), new("user", "  Hi there  "), new("assistant", "A")];

    internal static string Render(string template, IReadOnlyDictionary<string, object?>? extra = null) =>
        ChatTemplate.Parse(template, "test").Render(Messages, true, "<s>", "</s>", extra);

    [Theory]
    // Whitespace control as transformers renders (trim_blocks, lstrip_blocks, no trailing newline).
    [InlineData("{% if true %}\n  yes\n{% endif %}\n", "  yes\n")]
    [InlineData("<ul>\n    {% for x in [1, 2] %}\n    <li>{{ x }}</li>\n    {% endfor %}\n</ul>", "<ul>\n    <li>1</li>\n    <li>2</li>\n</ul>")]
    [InlineData("a  \n  {{- 'b' -}}  \n  c", "abc")]
    [InlineData("a \n {%- if true -%} \n b {%- endif %}", "ab")]
    [InlineData("  {%+ if true %}x{% endif %}", "  x")]
    [InlineData("x {% if true %}y{% endif %}", "x y")]
    [InlineData("a\n{# a comment #}\nb", "a\nb")]
    [InlineData("a\n  {#- note -#}\n  b", "ab")]
    [InlineData("{{ 'x' }}\n{{ 'y' }}\n", "x\ny")]
    [InlineData("line\r\n{% if true %}\r\nz\r\n{% endif %}", "line\nz\n")]
    public void Whitespace_control(string template, string expected) => Assert.Equal(expected, Render(template));

    [Theory]
    [InlineData("{{ messages[1]['content'] | trim }}|{{ messages[1].content.strip() }}", "Hi there|Hi there")]
    [InlineData("{{ messages[0].role }}{{ messages[-1]['role'] }}{{ messages | length }}", "systemassistant3")]
    [InlineData("{% for m in messages[1:] %}{{ m.role }},{% endfor %}", "user,assistant,")]
    [InlineData("{{ 'abcdef'[1:4] }}{{ 'abcdef'[::-1] }}{{ [1, 2, 3][-2:] }}", "bcdfedcba[2, 3]")]
    [InlineData("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
        "10TrueFalse3;21FalseFalse3;32FalseTrue3;")]
    [InlineData("{% for x in [] %}x{% else %}empty{% endfor %}", "empty")]
    [InlineData("{% for x in range(5) if x is odd %}{{ x }}{% endfor %}", "13")]
    [InlineData("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", "013")]
    [InlineData("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }} {% endfor %}", "a=1 b=2 ")]
    [InlineData("{% for k, v in {'a': 1} | items %}{{ k }}{{ v }}{% endfor %}", "a1")]
    [InlineData("{% if 1 > 2 %}a{% elif 2 > 1 %}b{% else %}c{% endif %}", "b")]
    [InlineData("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{% endfor %}{{ x }}", "1")]
    [InlineData("{% set ns = namespace(x=1, found=false) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}{{ ns.found }}", "4False")]
    [InlineData("{% set block %}a{{ 1 + 1 }}b{% endset %}[{{ block }}]", "[a2b]")]
    [InlineData("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.5 * 2 }} {{ 10 - 2 * 3 }}", "3 -4 1 2 3.5 1024 3.0 4")]
    [InlineData("{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ [1] + [2] }}", "a1NoneTrue ababab [1, 2]")]
    [InlineData("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'b' in 'abc' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }}", "True False True False True")]
    [InlineData("{{ not true or false and true }} {{ none or 'x' }} {{ 0 and 1 }}", "False x 0")]
    [InlineData("{{ 'y' if messages else 'n' }}{{ 'y' if [] else 'n' }}{{ 'z' if false }}", "yn")]
    [InlineData("[{{ undefined_thing }}]{{ 'no' if undefined_thing else 'falsy' }}{{ undefined_thing is defined }}", "[]falsyFalse")]
    [InlineData("{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}{{ [1] is iterable }}{{ 3 is divisibleby(3) }}{{ x is not defined }}", "TrueTrueTrueTrueTrueTrue")]
    [InlineData("{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}{{ tools is none }}", "<s></s>TrueTrue")]
    [InlineData("{{ 'Tab\\t\"q\\'\\n' | tojson }}", "\"Tab\\t\\\"q'\\n\"")]
    [InlineData("{{ {'a': [1, 2.5, none, true], 'b': {}} | tojson }}", "{\"a\": [1, 2.5, null, true], \"b\": {}}")]
    [InlineData("{{ {'a': [1]} | tojson(indent=2) }}", "{\n  \"a\": [\n    1\n  ]\n}")]
    [InlineData("{{ 'hEllo wOrld' | capitalize }} {{ 'ab' | upper }} {{ 'AB' | lower }} {{ 'ab cd' | title }}", "Hello world AB ab Ab Cd")]
    [InlineData("{{ missing | default('d') }} {{ '' | default('e', true) }} {{ 'v' | default('d') }}", "d e v")]
    [InlineData("{{ [1, 2, 3] | join(', ') }} {{ [1, 2] | first }} {{ [1, 2] | last }} {{ 12 | string }}{{ [3, 1] | list }}", "1, 2, 3 1 2 12[3, 1]")]
    [InlineData("{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join }}", "  Hi there  ")]
    [InlineData("{{ messages | map(attribute='role') | join('/') }} {{ ['a', 'b'] | map('upper') | join }}", "system/user/assistant AB")]
    [InlineData("{{ messages | rejectattr('role', 'in', ['user', 'system']) | list | length }}", "1")]
    [InlineData("{{ 'a,b,,c'.split(',') }} {{ ' x  y '.split() }} {{ 'a b c'.split(' ', 1) }}", "['a', 'b', '', 'c'] ['x', 'y'] ['a', 'b c']")]
    [InlineData("{{ 'xxhixx'.strip('x') }} {{ '  a '.lstrip() }}| {{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }}", "hi a | True True")]
    [InlineData("{{ 'a-b-c'.replace('-', '+') }} {{ 'a-b-c'.replace('-', '', 1) }} {{ 'Hi'.upper() }}{{ 'abc'.find('c') }}", "a+b+c ab-c HI2")]
    [InlineData("{{ {'a': 1}.get('a') }}{{ {'a': 1}.get('b', 'dflt') }}{{ {'a': 1}.get('b') }}", "1dfltNone")]
    [InlineData("{{ \"it's\" }} {{ 'say \"hi\"' }} {{ '\\u00e9' }} {{ 'a' 'b' }}", "it's say \"hi\" é ab")]
    [InlineData("{{ [1, 'a', none, 2.0] }} {{ {'k': 'v'} }} {{ 0.1 }} {{ 1e20 }}", "[1, 'a', None, 2.0] {'k': 'v'} 0.1 1e+20")]
    [InlineData("{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(3, 0, -1) | list }}", "[0, 1, 2] [1, 3, 5] [3, 2, 1]")]
    [InlineData("{{ -(3) | abs }} {{ '5' | int + 1 }} {{ [1, 2, 3] | sum }} {{ [1, 1, 2] | unique | list }}", "3 6 6 [1, 2]")]  // Jinja: the filter applies to -(3)
    // Python corners found by comparing with Jinja2 on random expressions.
    [InlineData("{{ true is number }}{{ true is integer }}{{ false is even }}{{ 2.5 is odd }}{{ true + 1 }}{{ true | abs }}", "TrueFalseTrueFalse21")]
    [InlineData("{{ 1 % 0.1 }} {{ -7.5 // 2 }} {{ 7.5 % -2 }}", "0.09999999999999995 -4.0 -0.5")]
    [InlineData("{{ 'ab-cd(ef x' | title }} {{ 'ab-cd(ef x'.title() }} {{ \"it's\" | title }}", "Ab-Cd(Ef X Ab-Cd(Ef X It's")]
    [InlineData("{{ '' is lower }}{{ '1a' is lower }}{{ [1] * 2 }}{{ 2 * 'ab' }}", "FalseTrue[1, 1]abab")]
    [InlineData("{{ [\"it's\", 'a\"b', 'tab\\there', 'both\\'\"'] }}", "[\"it's\", 'a\"b', 'tab\\there', 'both\\'\"']")]
    [InlineData("{% generation %}kept{% endgeneration %}", "kept")]  // transformers' extension, not plain Jinja
    public void Expressions_and_statements(string template, string expected) => Assert.Equal(expected, Render(template));

    [Fact]
    public void Extra_variables_accept_clr_and_json_values()
    {
        using var json = System.Text.Json.JsonDocument.Parse("""{"n": 3, "f": 0.5, "tags": ["x", "y"], "ok": true, "none": null}""");
        var extra = new Dictionary<string, object?>
        {
            ["json"] = json.RootElement,
            ["count"] = 2,
            ["ratio"] = 1.5f,
            ["flags"] = new List<bool> { true, false },
        };
        Assert.Equal("3 0.5 x,y True True 4 1.5 [True, False]",
            Render("{{ json.n }} {{ json.f }} {{ json.tags | join(',') }} {{ json.ok }} {{ json.none is none }} {{ count * 2 }} {{ ratio }} {{ flags }}", extra));
    }

    [Fact]
    public void Strftime_now_formats_the_clock()
    {
        var clock = new FixedClock(new DateTimeOffset(2024, 7, 26, 14, 5, 9, TimeSpan.Zero));
        var template = ChatTemplate.Parse("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S %B %A') }}", "t",
            new ChatTemplateOptions { Clock = clock });
        Assert.Equal("26 Jul 2024|2024-07-26 14:05:09 July Friday", template.Render([], false, null, null));
    }

    sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;

        public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
    }
}
