using System.Text;
using SharpTune.Tokenization.ChatTemplates;
using SharpTune.Tokenization.Decoders;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>
/// A chat format an Ollama <c>Modelfile</c> gives as <c>TEMPLATE</c> (Go template syntax over Ollama's <c>.Messages</c>,
/// which holds every turn, system ones included, and <c>.System</c>, the system turns joined) with the
/// <c>PARAMETER stop</c> strings that end a reply in it.
/// </summary>
/// <param name="Name">The kind, as Ollama's own template names it (chatml, llama3-instruct, zephyr).</param>
public sealed record OllamaChatFormat(string Name, string GoTemplate, IReadOnlyList<string> Stops);

/// <summary>
/// Finds the Go template that renders a model's Jinja chat template: each known kind (ChatML with or without a default
/// system prompt as Qwen2.5 and SmolLM2 write it, Llama 3, Zephyr) renders probe conversations as the Jinja template
/// does, or it is not that kind. Whether the rendering starts with BOS does not count when the tokenizer adds BOS
/// itself (llama.cpp adds it from <c>tokenizer.ggml.add_bos_token</c>, as SharpTune's training does).
/// </summary>
public static class OllamaChatFormats
{
    /// <summary>Conversations both renderings must agree on, each with the generation prompt (Ollama always asks for a reply).</summary>
    static readonly ChatMessage[][] Probes =
    [
        [new("user", "Hi there")],
        [new("system", "Be brief."), new("user", "Hi"), new("assistant", "Hello!"), new("user", "Bye")],
        [new("user", "A"), new("assistant", "B"), new("user", "C")],
    ];

    /// <summary>The Go template equivalent to <paramref name="template"/>, or null when it is none of the known kinds.</summary>
    public static OllamaChatFormat? Match(ChatTemplate template, IDecoderTokenizer tokenizer)
    {
        string? bos = tokenizer.BosId is int b ? tokenizer.IdToToken(b) : null, eos = tokenizer.EosId is int e ? tokenizer.IdToToken(e) : null;
        List<string> rendered;
        try
        {
            rendered = Probes.Select(p => template.Render(p, addGenerationPrompt: true, bos, eos)).ToList();
        }
        catch (Exception error) when (error is ChatTemplateException or ArgumentException or InvalidOperationException)
        {
            return null; // a template that refuses one of the probes (no system role, say) is none of these kinds
        }
        if (tokenizer.AddBos && bos is not null) rendered = rendered.Select(r => r.StartsWith(bos, StringComparison.Ordinal) ? r[bos.Length..] : r).ToList();
        foreach (var kind in Kinds(eos))
        {
            string? system = kind.DefaultSystem?.Invoke(rendered[0]);
            if (system is not null && !Writable(system)) continue;
            if (Probes.Select(p => kind.Render(p, system)).SequenceEqual(rendered, StringComparer.Ordinal))
                return new OllamaChatFormat(kind.Name, kind.GoTemplate(system), kind.Stops);
        }
        return null;
    }

    /// <summary>
    /// One kind: how Ollama renders a conversation with <see cref="GoTemplate"/> (written here in C#, line for line),
    /// and where a default system prompt is read from the rendering of a conversation without one.
    /// </summary>
    sealed record Kind(string Name, Func<IReadOnlyList<ChatMessage>, string?, string> Render, Func<string?, string> GoTemplate,
        IReadOnlyList<string> Stops, Func<string, string?>? DefaultSystem = null);

    static IEnumerable<Kind> Kinds(string? eos)
    {
        const string ImStart = "<|im_start|>", ImEnd = "<|im_end|>";
        yield return new Kind("chatml",
            (messages, system) =>
            {
                var text = new StringBuilder();
                if (system is not null && !messages.Any(m => m.Role == "system")) text.Append($"{ImStart}system\n{system}{ImEnd}\n");
                foreach (var m in messages) text.Append($"{ImStart}{m.Role}\n{m.Content}{ImEnd}\n");
                return text.Append($"{ImStart}assistant\n").ToString();
            },
            system => (system is null ? "" : $"{{{{- if not .System }}}}{ImStart}system\n{system}{ImEnd}\n{{{{ end }}}}\n") +
                $"{{{{- range .Messages }}}}{ImStart}{{{{ .Role }}}}\n{{{{ .Content }}}}{ImEnd}\n{{{{ end }}}}{ImStart}assistant\n",
            [ImStart, ImEnd],
            first =>
            {
                string open = $"{ImStart}system\n";
                int end = first.StartsWith(open, StringComparison.Ordinal) ? first.IndexOf(ImEnd, open.Length, StringComparison.Ordinal) : -1;
                return end < 0 ? null : first[open.Length..end];
            });

        const string Header = "<|start_header_id|>", EndHeader = "<|end_header_id|>", Eot = "<|eot_id|>";
        yield return new Kind("llama3-instruct",
            (messages, _) => string.Concat(messages.Select(m => $"{Header}{m.Role}{EndHeader}\n\n{m.Content}{Eot}")) + $"{Header}assistant{EndHeader}\n\n",
            _ => $"{{{{- range .Messages }}}}{Header}{{{{ .Role }}}}{EndHeader}\n\n{{{{ .Content }}}}{Eot}\n{{{{- end }}}}{Header}assistant{EndHeader}\n\n",
            [Header, EndHeader, Eot]);

        if (eos is null || !Writable(eos)) yield break;
        yield return new Kind("zephyr",
            (messages, _) => string.Concat(messages.Select(m => $"<|{m.Role}|>\n{m.Content}{eos}\n")) + "<|assistant|>\n",
            _ => $"{{{{- range .Messages }}}}<|{{{{ .Role }}}}|>\n{{{{ .Content }}}}{eos}\n{{{{ end }}}}<|assistant|>\n",
            ["<|system|>", "<|user|>", "<|assistant|>", eos]);
    }

    /// <summary>Text that can stand literally in a Go template inside a Modelfile's triple quotes.</summary>
    static bool Writable(string text) => !text.Contains("{{", StringComparison.Ordinal) && !text.Contains("\"\"\"", StringComparison.Ordinal);
}
