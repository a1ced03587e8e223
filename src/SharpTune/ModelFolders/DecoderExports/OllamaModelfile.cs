using System.Text;
using SharpTune.Tokenization.ChatTemplates;
using SharpTune.Tokenization.Decoders;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>
/// The text of an Ollama <c>Modelfile</c> (FROM, ADAPTER, TEMPLATE, PARAMETER stop), as Ollama's docs describe the format.
/// Ollama takes a chat template from the GGUF's <c>tokenizer.chat_template</c> only when it resembles one of its own
/// (<c>template.Named</c>); the TEMPLATE written here, when the template is a kind <see cref="OllamaChatFormats"/> knows,
/// gives Ollama the prompt format the model was trained with whatever that match finds.
/// </summary>
static class OllamaModelfile
{
    /// <param name="chatTemplate">The chat template the model was trained with (the GGUF's tokenizer.chat_template), or null.</param>
    /// <param name="notes">Receives what is worth telling the user (no TEMPLATE written, and why).</param>
    public static string Render(string modelfilePath, string baseGguf, string? adapterGguf, IDecoderTokenizer tokenizer, string? chatTemplate,
        List<string> notes)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(modelfilePath))!;
        var text = new StringBuilder();
        text.AppendLine($"# Ollama Modelfile written by SharpTune; create the model with: ollama create NAME -f {Path.GetFileName(modelfilePath)}");
        text.AppendLine($"FROM {Reference(folder, baseGguf)}");
        if (adapterGguf is not null) text.AppendLine($"ADAPTER {Reference(folder, adapterGguf)}");

        var stops = tokenizer.StopIds.Order().Select(tokenizer.IdToToken).ToList();
        var format = chatTemplate is null ? null : Match(chatTemplate, tokenizer);
        if (format is not null)
        {
            text.AppendLine($"# The chat template the model was trained with (the GGUF's tokenizer.chat_template), as Ollama's {format.Name} format:");
            text.AppendLine($"TEMPLATE \"\"\"{format.GoTemplate}\"\"\"");
            stops.AddRange(format.Stops);
        }
        else if (chatTemplate is not null)
        {
            text.AppendLine("# No TEMPLATE: the chat template (the GGUF's tokenizer.chat_template) is no kind SharpTune writes in Ollama's syntax;");
            text.AppendLine("# Ollama uses its own template when it recognises this one (see: ollama show NAME --template).");
            notes.Add("no TEMPLATE in the Modelfile: the chat template is not ChatML, Llama 3 or Zephyr; check the prompt Ollama builds with 'ollama show NAME --template'");
        }
        else
        {
            text.AppendLine("# No TEMPLATE: the model has no chat template; Ollama sends prompts as they are.");
        }
        foreach (string stop in stops.Distinct(StringComparer.Ordinal)) text.AppendLine($"PARAMETER stop {Quote(stop)}");
        return text.ToString();
    }

    static OllamaChatFormat? Match(string chatTemplate, IDecoderTokenizer tokenizer)
    {
        try
        {
            return OllamaChatFormats.Match(ChatTemplate.Parse(chatTemplate, "the model's chat template"), tokenizer);
        }
        catch (ChatTemplateException)
        {
            return null; // beyond SharpTune's Jinja subset: none of the known kinds
        }
    }

    /// <summary>A path relative to the Modelfile's folder (./name) when the file lies under it, else the full path.</summary>
    static string Reference(string folder, string file)
    {
        string full = Path.GetFullPath(file), relative = Path.GetRelativePath(folder, full);
        string path = relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative) ? full : "./" + relative.Replace('\\', '/');
        return path.Any(char.IsWhiteSpace) ? Quote(path) : path;
    }

    static string Quote(string value) => "\"" + value.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
}
