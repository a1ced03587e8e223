namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>The tokenizer files of a Hugging Face export: a folder base's copied, a GGUF base's converted.</summary>
static class HuggingFaceTokenizerFiles
{
    public static List<string> Write(DecoderSource source, string folder)
    {
        if (source.IsGguf)
            throw new NotSupportedException(
                $"the base {source} has no tokenizer.json to copy and SharpTune does not yet convert a GGUF tokenizer to one; export from the Hugging Face folder of the base");
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
