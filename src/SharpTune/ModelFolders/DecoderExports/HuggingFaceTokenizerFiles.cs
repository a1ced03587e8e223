using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Tokenization.Decoders;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>
/// The tokenizer files of a Hugging Face export: a folder base's copied, a GGUF base's converted to tokenizer.json; the
/// chat template is the source's (<see cref="DecoderSource.ChatTemplate"/>: a run's own when it trained with another).
/// </summary>
static class HuggingFaceTokenizerFiles
{
    const string JinjaFile = "chat_template.jinja", ConfigFile = "tokenizer_config.json";

    public static List<string> Write(DecoderSource source, string folder)
    {
        if (source.IsGguf) return GgufTokenizerConversion.ToHuggingFace(source.GgufTokenizer(), folder, source.Path).ToList();
        var written = new List<string>();
        foreach (string name in DecoderSource.TokenizerFiles)
        {
            string from = Path.Combine(source.Path, name);
            if (!File.Exists(from)) continue;
            string to = Path.Combine(folder, name);
            File.Copy(from, to, overwrite: true);
            written.Add(to);
        }
        string? template = source.ChatTemplate;
        if (template == source.Tokenizer.ChatTemplate) return written;
        // The run's template replaces the base's: transformers reads tokenizer_config.json's chat_template before chat_template.jinja.
        string configPath = Path.Combine(folder, ConfigFile), jinjaPath = Path.Combine(folder, JinjaFile);
        var config = File.Exists(configPath) ? JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject ?? [] : [];
        config.Remove("chat_template");
        if (template is not null) config["chat_template"] = template;
        File.WriteAllText(configPath, config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        if (!written.Contains(configPath)) written.Add(configPath);
        if (File.Exists(jinjaPath))
        {
            File.Delete(jinjaPath);
            written.Remove(jinjaPath);
        }
        return written;
    }
}
