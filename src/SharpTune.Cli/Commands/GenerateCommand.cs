using SharpTune.Data;
using SharpTune.ModelFolders;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SharpTune.Generation;
using SharpTune.Models.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune generate --model M --prompt "..."</c>: continues prompts with a decoder language model (a Hugging Face
/// folder or a GGUF file). Prompts from <c>--prompt</c>, <c>--data FILE</c> or standard input, one per line; tokens
/// stream to stdout as they come (or one JSON object per prompt with <c>--json</c>); diagnostics go to stderr.
/// </summary>
public static class GenerateCommand
{
    static readonly Option<string> Model = new("--model") { Description = "Hugging Face model folder or .gguf file", Required = true };
    static readonly Option<string[]> Prompt = new("--prompt") { Description = "A prompt (repeat for several; default: --data or stdin, one per line)" };
    static readonly Option<string> Data = new("--data") { Description = "A file of prompts, one per line (.txt), or JSONL with a prompt or text field" };
    static readonly GenerationFlags Flags = new(maxNewTokens: 128, "Tokens to generate");
    static readonly Option<bool> Json = new("--json") { Description = "One JSON object per prompt with text and token_ids (the generated part)" };
    static readonly Option<int> BatchSize = new("--batch-size") { Description = "Prompts generated together, left-padded (default 1)", DefaultValueFactory = _ => 1 };
    static readonly Option<bool> NoBos = new("--no-special-tokens") { Description = "Do not add the model's BOS token to the prompt" };

    public static Command Create()
    {
        var command = new Command("generate", "Continue prompts with a decoder language model.") { Model, Prompt, Data, Json, BatchSize, NoBos };
        foreach (var flag in Flags.All) command.Options.Add(flag);
        command.SetAction(result => CommandRunner.Run(() => Run(result)));
        return command;
    }

    static int Run(ParseResult result)
    {
        int batchSize = result.GetValue(BatchSize);
        if (batchSize < 1) throw new ArgumentException($"--batch-size must be at least 1, got {batchSize}");
        var prompts = ReadPrompts(result.GetValue(Prompt), result.GetValue(Data));
        var dtype = Flags.Weights(result);
        ModelMemory.Check(result.GetValue(Model)!, dtype, "generate", batchSize, 512 + result.GetValue(Flags.MaxNewTokens));
        var loading = Stopwatch.StartNew();
        using var lm = LanguageModelFolder.Load(result.GetValue(Model)!, dtype);
        double loadSeconds = loading.Elapsed.TotalSeconds;
        var options = Flags.Options(result, lm);
        var diagnostics = Flags.Diagnostics(result);
        diagnostics.WriteLine($"model: {lm.Source}");
        var timing = GenerationTiming.Zero;
        bool json = result.GetValue(Json), addSpecial = !result.GetValue(NoBos);
        var tokenizer = lm.Tokenizer;
        for (int start = 0; start < prompts.Count; start += batchSize)
        {
            var batch = prompts.Skip(start).Take(batchSize).ToList();
            var ids = batch.Select(p => tokenizer.Encode(p, addSpecialTokens: addSpecial)).ToList();
            // Streaming shows one sequence's tokens as they come; batches and JSON print when each batch ends.
            var stream = !json && batch.Count == 1 ? tokenizer.CreateDecodeStream() : null;
            if (stream is not null) Console.Write(batch[0]);
            var generator = new TextGenerator(lm.Model, options, tokenizer)
            {
                PadId = tokenizer.PaddingId,
                OnToken = stream is null ? null : (_, token) => Console.Write(stream.Next(token)),
            };
            var outputs = generator.Generate(ids);
            timing += generator.LastTiming;
            for (int i = 0; i < batch.Count; i++)
            {
                string text = tokenizer.Decode(outputs[i].TokenIds);
                if (json)
                    Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
                    {
                        ["prompt"] = batch[i], ["text"] = text, ["token_ids"] = outputs[i].TokenIds,
                        ["finish_reason"] = JsonNamingPolicy.SnakeCaseLower.ConvertName(outputs[i].Finish.ToString()),
                    }));
                else if (stream is not null) Console.WriteLine(stream.Flush());
                else Console.WriteLine(batch[i] + text);
                diagnostics.WriteLine($"[{start + i + 1}/{prompts.Count}] {outputs[i].TokenIds.Count} tokens, {outputs[i].Finish}");
            }
        }
        diagnostics.WriteLine(SpeedLine(loadSeconds, timing));
        return 0;
    }

    /// <summary>The figures llama.cpp prints: <c>load 1.23 s; prompt 12 tokens, 345.6 tokens/s; generated 32 tokens, 21.3 tokens/s</c>.</summary>
    internal static string SpeedLine(double? loadSeconds, GenerationTiming timing) =>
        (loadSeconds is { } load ? string.Create(CultureInfo.InvariantCulture, $"load {load:F2} s; ") : "") + timing;

    /// <summary>Prompts from --prompt, else --data (a .txt line each, or JSONL prompt/text fields), else standard input.</summary>
    internal static List<string> ReadPrompts(string[]? given, string? file)
    {
        if (given is { Length: > 0 }) return [.. given];
        if (file is not null && !File.Exists(file)) throw new FileNotFoundException($"--data: {file} does not exist", file);
        var prompts = TextLines.Read(file is null ? TextLines.Of(Console.In, "stdin") : TextLines.OfFile(file), file is not null && TextLines.IsJsonl(file),
            ["prompt", "text"], unescapeNewlines: true);
        return prompts.Count > 0 ? prompts : throw new ArgumentException("no prompt: give --prompt, --data FILE or lines on standard input");
    }
}
