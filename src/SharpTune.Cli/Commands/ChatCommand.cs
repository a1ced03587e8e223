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
    static readonly Option<int> MaxNewTokens = new("--max-new-tokens") { Description = "Tokens per reply at most (default 512)", DefaultValueFactory = _ => 512 };
    static readonly Option<bool> Greedy = new("--greedy") { Description = "Always take the most likely token" };
    static readonly Option<double> Temperature = new("--temperature") { Description = "Sampling temperature (default 0.7)", DefaultValueFactory = _ => 0.7 };
    static readonly Option<double> TopP = new("--top-p") { Description = "Nucleus sampling (default 0.9)", DefaultValueFactory = _ => 0.9 };
    static readonly Option<long> Seed = new("--seed") { Description = "Seed of the sampling (default 42)", DefaultValueFactory = _ => 42L };
    static readonly Option<string> DType = new("--dtype") { Description = GenerateCommand.DTypeHelp, DefaultValueFactory = _ => "stored" };
    static readonly Option<bool> Quiet = new("--quiet", "-q") { Description = "No model line or speed figures (load time, prompt and generation tokens/s) on stderr" };

    public static Command Create()
    {
        var command = new Command("chat", "Chat with a decoder language model, using its chat template.")
            { Model, System, Template, MaxNewTokens, Greedy, Temperature, TopP, Seed, DType, Quiet };
        command.SetAction(result => CommandRunner.Run(() => Run(result)));
        return command;
    }

    static int Run(ParseResult result)
    {
        var dtype = GenerateCommand.ParseDType(result.GetValue(DType)!);
        ModelMemory.Check(result.GetValue(Model)!, dtype, "chat", 1, 512 + result.GetValue(MaxNewTokens));
        var loading = Stopwatch.StartNew();
        using var lm = LanguageModelFolder.Load(result.GetValue(Model)!, dtype, result.GetValue(Template));
        double? loadSeconds = loading.Elapsed.TotalSeconds;
        var diagnostics = result.GetValue(Quiet) ? TextWriter.Null : Console.Error;
        if (lm.Template is null)
            throw new ArgumentException($"{result.GetValue(Model)} has no chat template (a run folder: it was trained without one); give one with --chat-template FILE");
        var options = new GenerationOptions
        {
            MaxNewTokens = result.GetValue(MaxNewTokens), Greedy = result.GetValue(Greedy), Temperature = result.GetValue(Temperature),
            TopP = result.GetValue(TopP), Seed = result.GetValue(Seed), StopTokens = lm.Tokenizer.StopIds,
        }.Validate();
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
            var generator = new TextGenerator(lm.Model, options with { Seed = options.Seed + turn++ })
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
