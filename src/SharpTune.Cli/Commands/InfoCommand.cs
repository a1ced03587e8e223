using System.CommandLine;
using SharpTune.Models;

namespace SharpTune.Cli.Commands;

/// <summary><c>sharptune info --model NAME|FOLDER|FILE.onnx</c>: what a model is and where its weights came from.</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model")
        {
            Description = "Built-in model name (minilm, arctic-xs), Hugging Face model folder, or ONNX file",
            DefaultValueFactory = _ => BuiltInModels.MiniLM.Name,
        };
        var command = new Command("info", "Show a pretrained model's architecture, size, vocabulary and weight source.") { model };
        command.SetAction(result => CommandRunner.Run(() => Run(result.GetValue(model)!)));
        return command;
    }

    static int Run(string spec)
    {
        using var encoder = PretrainedEncoder.Load(spec);
        var c = encoder.Config;
        int vocabEntries = CountLines(encoder.Vocab);
        Console.WriteLine($"model          {spec}");
        Console.WriteLine($"architecture   BertModel ({c.ModelType}): {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, " +
                          $"{c.NumAttentionHeads} heads, intermediate {c.IntermediateSize}, {c.HiddenAct}, " +
                          $"max positions {c.MaxPositionEmbeddings}, pooler {(encoder.Model.HasPooler ? "yes" : "no")}");
        Console.WriteLine($"parameters     {encoder.ParameterCount:N0}");
        Console.WriteLine($"vocabulary     {vocabEntries:N0} WordPiece entries ({(encoder.LowerCase ? "uncased" : "cased")}); config vocab_size {c.VocabSize:N0}");
        Console.WriteLine($"weights from   {encoder.Source}");
        foreach (var note in encoder.Notes) Console.WriteLine($"note           {note}");
        return 0;
    }

    static int CountLines(byte[] text)
    {
        int lines = text.Count(b => b == (byte)'\n');
        return text.Length > 0 && text[^1] != (byte)'\n' ? lines + 1 : lines;
    }
}
