namespace SharpTune.Tokenization.ChatTemplates;

/// <summary>One turn of a conversation, as the <c>messages</c> list of a chat template sees it.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>Limits and the clock a template renders with. The defaults fit every real chat template by a wide margin.</summary>
public sealed record ChatTemplateOptions
{
    /// <summary>Most nodes evaluated plus items iterated in one render; stops <c>range(10**9)</c> and the like.</summary>
    public long MaxSteps { get; init; } = 2_000_000;

    /// <summary>Most characters of output, and of any single string the template builds.</summary>
    public int MaxOutputChars { get; init; } = 16 * 1024 * 1024;

    /// <summary>Deepest nesting of blocks and of expressions the parser accepts.</summary>
    public int MaxDepth { get; init; } = 100;

    /// <summary>What <c>strftime_now</c> reads (transformers uses local time).</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    public static ChatTemplateOptions Default { get; } = new();

    internal void Validate()
    {
        if (MaxSteps < 1) throw new ArgumentOutOfRangeException(nameof(MaxSteps), MaxSteps, "MaxSteps must be at least 1");
        if (MaxOutputChars < 1) throw new ArgumentOutOfRangeException(nameof(MaxOutputChars), MaxOutputChars, "MaxOutputChars must be at least 1");
        if (MaxDepth < 1) throw new ArgumentOutOfRangeException(nameof(MaxDepth), MaxDepth, "MaxDepth must be at least 1");
    }
}

/// <summary>
/// A chat template as models ship it (Hugging Face <c>tokenizer_config.json</c> "chat_template", GGUF
/// <c>tokenizer.chat_template</c>): a Jinja2 program, run by a small safe interpreter that implements the subset
/// real templates use and fails loudly, with the template line and column, on anything else. Rendering follows
/// transformers' <c>apply_chat_template</c>: <c>trim_blocks</c> and <c>lstrip_blocks</c> on, the variables
/// <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c>, <c>eos_token</c>, <c>tools</c> and
/// <c>documents</c> (none unless given), and the functions <c>raise_exception</c> and <c>strftime_now</c>.
/// </summary>
public sealed class ChatTemplate
{
    readonly List<Node> _body;
    readonly ChatTemplateOptions _options;

    ChatTemplate(string text, string source, List<Node> body, ChatTemplateOptions options)
    {
        Text = text;
        Source = source;
        _body = body;
        _options = options;
    }

    /// <summary>The template text as given.</summary>
    public string Text { get; }

    /// <summary>Where the template came from (for example <c>"model/tokenizer_config.json: chat_template"</c>).</summary>
    public string Source { get; }

    /// <summary>
    /// Parses <paramref name="template"/>. Syntax errors and unsupported constructs throw
    /// <see cref="ChatTemplateException"/> naming <paramref name="source"/>, the line, the column and what was expected.
    /// </summary>
    public static ChatTemplate Parse(string template, string source, ChatTemplateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(source);
        options ??= ChatTemplateOptions.Default;
        options.Validate();
        return new ChatTemplate(template, source, TemplateParser.Parse(template, source, options.MaxDepth), options);
    }

    /// <summary>
    /// Renders the conversation. A null <paramref name="bosToken"/> or <paramref name="eosToken"/> leaves that variable
    /// undefined (it prints empty), as transformers does for a tokenizer without that token. <paramref name="extra"/>
    /// adds or overrides template variables (<c>tools</c>, <c>date_string</c>, <c>enable_thinking</c>...); values may be
    /// strings, numbers, booleans, null, dictionaries, lists or <see cref="System.Text.Json.JsonElement"/>.
    /// </summary>
    public string Render(
        IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, string? bosToken, string? eosToken,
        IReadOnlyDictionary<string, object?>? extra = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var globals = new Dictionary<string, object?>
        {
            ["messages"] = messages.Select(m => (object?)Values.Message(m)).ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["tools"] = null,
            ["documents"] = null,
        };
        if (bosToken != null) globals["bos_token"] = bosToken;
        if (eosToken != null) globals["eos_token"] = eosToken;
        foreach (var (key, value) in extra ?? new Dictionary<string, object?>())
        {
            try { globals[key] = Values.FromClr(value, key); }
            catch (TemplateError e) { throw new ArgumentException($"extra variable '{key}': {e.Message}", nameof(extra)); }
        }
        return new Evaluator(Source, _options, globals).Render(_body);
    }
}
