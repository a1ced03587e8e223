using SharpTune.Tokenization.Decoders;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>The tokenizer files of a Hugging Face export: a folder base's copied, a GGUF base's converted to tokenizer.json.</summary>
static class HuggingFaceTokenizerFiles
{
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
        return written;
    }
}
