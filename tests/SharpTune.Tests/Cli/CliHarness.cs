using SharpTune.Models.Bert;
using System.Text;
using SharpTune.Checkpoints;

namespace SharpTune.Tests.Cli;

/// <summary>The sharptune command run in this process with its output captured, and the tiny model and data it trains on.</summary>
static class CliHarness
{
    public static (int Code, string Out, string Error) Run(params string[] args)
    {
        var (oldOut, oldError) = (Console.Out, Console.Error);
        var output = new StringWriter();
        var error = new StringWriter();
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            int code = SharpTune.Cli.Program.Run(args);
            return (code, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldError);
        }
    }

    /// <summary>A tiny pretrained model folder (64 positions) whose vocabulary covers the toy texts.</summary>
    public static string TinyModelFolder(TestModels.TempFolder temp, string name = "tiny-model")
    {
        string folder = temp.File(name);
        var words = new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "great", "fine", "bad", "awful", "poor", "the", "movie", "was", "food", "is" };
        var vocab = words.Concat(Enumerable.Range(0, 99 - words.Length).Select(i => $"x{i}"));
        using var model = TestModels.TinyModel(seed: 5);
        BertFolder.Save(folder, model, Encoding.UTF8.GetBytes(string.Join("\n", vocab) + "\n"), lowerCase: true);
        return folder;
    }

    /// <summary>Positive and negative toy reviews as CSV, with the given column names.</summary>
    public static string ToyCsv(TestModels.TempFolder temp, string name, int rows, int seed, string textColumn = "text", string labelColumn = "label")
    {
        var random = new Random(seed);
        string[] good = ["good", "great", "fine"], bad = ["bad", "awful", "poor"];
        var text = new StringBuilder($"{textColumn},{labelColumn}\n");
        for (int i = 0; i < rows; i++)
        {
            bool positive = random.Next(2) == 0;
            var pool = positive ? good : bad;
            text.Append($"\"the {(random.Next(2) == 0 ? "movie was" : "food is")} {pool[random.Next(3)]}, {pool[random.Next(3)]}\",{(positive ? "pos" : "neg")}\n");
        }
        string path = temp.File(name);
        File.WriteAllText(path, text.ToString());
        return path;
    }
}
