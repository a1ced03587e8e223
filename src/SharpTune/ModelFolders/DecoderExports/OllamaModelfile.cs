using System.Text;
using SharpTune.Tokenization.Decoders;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>The text of an Ollama <c>Modelfile</c> (FROM, ADAPTER, PARAMETER stop), as Ollama's docs describe the format.</summary>
static class OllamaModelfile
{
    public static string Render(string modelfilePath, string baseGguf, string? adapterGguf, IDecoderTokenizer tokenizer)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(modelfilePath))!;
        var text = new StringBuilder();
        text.AppendLine("# Ollama Modelfile written by SharpTune; create the model with: ollama create NAME -f Modelfile");
        text.AppendLine($"FROM {Reference(folder, baseGguf)}");
        if (adapterGguf is not null) text.AppendLine($"ADAPTER {Reference(folder, adapterGguf)}");
        if (tokenizer.ChatTemplate is not null)
            text.AppendLine("# The chat template is the GGUF's tokenizer.chat_template, which Ollama reads from the FROM file.");
        foreach (int id in tokenizer.StopIds.Order()) text.AppendLine($"PARAMETER stop {Quote(tokenizer.IdToToken(id))}");
        return text.ToString();
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
