namespace SharpTune.Tokenization.ChatTemplates;

/// <summary>What went wrong with a chat template.</summary>
public enum ChatTemplateErrorKind
{
    /// <summary>The template text is not valid (for the subset of Jinja we support).</summary>
    Syntax,
    /// <summary>The template uses a Jinja construct, filter, test or method this interpreter does not implement.</summary>
    Unsupported,
    /// <summary>Rendering failed: undefined value, wrong type, bad argument.</summary>
    Render,
    /// <summary>The template itself called <c>raise_exception(message)</c>; <see cref="ChatTemplateException.Detail"/> is its message.</summary>
    Raised,
    /// <summary>The template ran past the step, depth or output limit.</summary>
    Limit,
}

/// <summary>
/// A chat template failed to parse or render. The message names the template source (file and key), the
/// line and column in the template, and what was wrong or expected.
/// </summary>
public sealed class ChatTemplateException : Exception
{
    public ChatTemplateException(ChatTemplateErrorKind kind, string source, int line, int column, string detail)
        : base($"{source}:{line}:{column}: {Describe(kind)}{detail}")
    {
        Kind = kind;
        TemplateSource = source;
        Line = line;
        Column = column;
        Detail = detail;
    }

    public ChatTemplateErrorKind Kind { get; }

    /// <summary>Where the template came from, as given to <see cref="ChatTemplate.Parse"/>.</summary>
    public string TemplateSource { get; }

    /// <summary>1-based line in the template.</summary>
    public int Line { get; }

    /// <summary>1-based column in the template.</summary>
    public int Column { get; }

    /// <summary>The message without the location prefix.</summary>
    public string Detail { get; }

    static string Describe(ChatTemplateErrorKind kind) => kind switch
    {
        ChatTemplateErrorKind.Syntax => "syntax error: ",
        ChatTemplateErrorKind.Unsupported => "unsupported: ",
        ChatTemplateErrorKind.Raised => "template raised: ",
        ChatTemplateErrorKind.Limit => "limit reached: ",
        _ => "",
    };
}

/// <summary>Thrown inside the interpreter without a location; the node being evaluated adds it.</summary>
sealed class TemplateError(ChatTemplateErrorKind kind, string message) : Exception(message)
{
    public ChatTemplateErrorKind Kind { get; } = kind;

    public static TemplateError Render(string message) => new(ChatTemplateErrorKind.Render, message);

    public static TemplateError Unsupported(string message) => new(ChatTemplateErrorKind.Unsupported, message);
}
