using System.Diagnostics;
using SharpTune.ModelFolders;
using System.CommandLine;
using SharpTune.Generation;
using SharpTune.Models.Decoders;
using SharpTune.Tokenization.ChatTemplates;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune chat --model M</c>: an interactive conversation with the model's chat template and the history so far.
/// Each turn renders the whole conversation with the template (as transformers' apply_chat_template does) and
/// streams the reply. <c>/reset</c> starts over, <c>/exit</c> or end of input leaves.
/// </summary>
public static class ChatCommand
{
    static readonly Option<string> Model = new("--model") { Description = "Hugging Face model folder or .gguf file", Required = true };
    static readonly Option<string> System = new("--system") { Description = "A system message that opens the conversation" };
    static readonly Option<string> Template = new("--chat-template") { Description = "A Jinja chat template file, instead of the model's own" };
    static readonly GenerationFlags Flags = new(maxNewTokens: 512, "Tokens per reply");

    public static Command Create()
    {
        var command = new Command("chat", "Chat with a decoder language model, using its chat template.") { Model, System, Template };
        foreach (var flag in Flags.All) command.Options.Add(flag);
        command.SetAction(result => CommandRunner.Run(() => Run(result)));
        return command;
    }

    static int Run(ParseResult result)
    {
        var dtype = Flags.Weights(result);
        ModelMemory.Check(result.GetValue(Model)!, dtype, "chat", 1, 512 + result.GetValue(Flags.MaxNewTokens));
        var loading = Stopwatch.StartNew();
        using var lm = LanguageModelFolder.Load(result.GetValue(Model)!, dtype, result.GetValue(Template));
        double? loadSeconds = loading.Elapsed.TotalSeconds;
        var diagnostics = Flags.Diagnostics(result);
        if (lm.Template is null)
            throw new ArgumentException($"{result.GetValue(Model)} has no chat template (a run folder: it was trained without one); give one with --chat-template FILE");
        var options = Flags.Options(result, lm);
        var history = new List<ChatMessage>();
        if (result.GetValue(System) is { } system) history.Add(new ChatMessage("system", system));
        int opening = history.Count;
        diagnostics.WriteLine($"model: {lm.Source}; chat template: {lm.Template.Source}. /reset starts over, /exit leaves.");
        int turn = 0;
        while (true)
        {
            Console.Error.Write("> ");
            string? line = Console.In.ReadLine();
            if (line is null || line.Trim() == "/exit") break;
            if (line.Trim() == "/reset") { history.RemoveRange(opening, history.Count - opening); continue; }
            if (line.Trim().Length == 0) continue;
            history.Add(new ChatMessage("user", line));
            string prompt = lm.RenderChat(history);
            // The template writes the special tokens (and BOS where the model wants it) itself.
            var ids = lm.Tokenizer.Encode(prompt, addSpecialTokens: false, parseSpecial: true);
            var stream = lm.Tokenizer.CreateDecodeStream(skipSpecialTokens: true);
            var generator = new TextGenerator(lm.Model, options with { Seed = options.Seed + turn++ }, lm.Tokenizer)
            {
                OnToken = (_, token) => Console.Write(stream.Next(token)),
            };
            var reply = generator.Generate([ids]).Single();
            Console.WriteLine(stream.Flush());
            diagnostics.WriteLine($"[{GenerateCommand.SpeedLine(loadSeconds, generator.LastTiming)}]");
            loadSeconds = null;   // the load time goes with the first reply only
            history.Add(new ChatMessage("assistant", lm.Tokenizer.Decode(reply.TokenIds, skipSpecialTokens: true)));
        }
        return 0;
    }
}
