using System.CommandLine;
using SharpTune.Inference;
using SharpTune.ModelFolders;
using SharpTune.Serving;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune serve --model BASE [--adapter name=runs/x ...]</c>: an OpenAI-compatible server on 127.0.0.1 (by default)
/// over one base model and fine-tuned runs over it, each chosen per request by the request's <c>model</c>. A decoder
/// serves chat and text completions, an encoder embeddings and classification. SIGTERM or Ctrl-C lets the requests in
/// flight finish, then the server exits.
/// </summary>
public static class ServeCommand
{
    static readonly Option<string> Model = new("--model") { Description = "Base model: a GGUF file, a Hugging Face folder (decoder or encoder), a built-in encoder name", Required = true };
    static readonly Option<string[]> Adapter = new("--adapter") { Description = "name=RUN: a fine-tuned run (adapter or full) served as model 'name' (repeatable)" };
    static readonly Option<string> Name = new("--name") { Description = "The name requests use for the base model (default: its file or folder name)" };
    static readonly Option<string> Host = new("--host") { Description = "Address to listen on (default 127.0.0.1: this machine only)", DefaultValueFactory = _ => "127.0.0.1" };
    static readonly Option<int> Port = new("--port") { Description = "Port (default 8080; 0 picks a free one)", DefaultValueFactory = _ => 8080 };
    static readonly Option<string> ApiKey = new("--api-key") { Description = "Require Authorization: Bearer KEY (default: the SHARPTUNE_API_KEY variable, else none)" };
    static readonly Option<int> MaxBatch = new("--max-batch") { Description = "Sequences decoded together (default 16)", DefaultValueFactory = _ => 16 };
    static readonly Option<int> MaxInputs = new("--max-inputs") { Description = "Texts one embeddings or classify request may send, and an encoder batch's largest size (default 2048)", DefaultValueFactory = _ => 2048 };
    static readonly Option<int> MaxQueue = new("--max-queue") { Description = "Requests waiting for a place; more get 429 (default 64)", DefaultValueFactory = _ => 64 };
    static readonly Option<int> MaxTokens = new("--max-tokens") { Description = "Tokens generated when a request gives no max_tokens (default 512)", DefaultValueFactory = _ => 512 };
    static readonly Option<long> MaxBody = new("--max-body") { Description = "Largest request body in bytes (default 1048576)", DefaultValueFactory = _ => 1L << 20 };
    static readonly Option<string> DType = GenerationFlags.WeightsOption("Language models only. ");
    static readonly Option<string> ChatTemplate = new("--chat-template") { Description = "A Jinja chat template for the base model (its own by default)" };

    public static Command Create()
    {
        var command = new Command("serve", "Serve a model and its fine-tuned runs over an OpenAI-compatible HTTP API.")
            { Model, Adapter, Name, Host, Port, ApiKey, MaxBatch, MaxQueue, MaxInputs, MaxTokens, MaxBody, DType, ChatTemplate };
        command.SetAction(result => CommandRunner.Run(() => Run(result)));
        return command;
    }

    static int Run(ParseResult result)
    {
        var options = new ServeOptions
        {
            Host = result.GetValue(Host)!, Port = result.GetValue(Port),
            ApiKey = result.GetValue(ApiKey) ?? NonEmpty(Environment.GetEnvironmentVariable("SHARPTUNE_API_KEY")),
            MaxBatch = result.GetValue(MaxBatch), MaxQueue = result.GetValue(MaxQueue), MaxInputs = result.GetValue(MaxInputs), DefaultMaxTokens = result.GetValue(MaxTokens),
            MaxBodyBytes = result.GetValue(MaxBody),
        }.Validate();
        var adapters = (result.GetValue(Adapter) ?? []).Select(ParseAdapter).ToList();
        string model = result.GetValue(Model)!;
        if (LanguageModelFolder.IsLanguageModel(model))
        {
            using var host = new LanguageModelHost(model, GenerationFlags.ParseWeights(result.GetValue(DType)!), result.GetValue(Name), result.GetValue(ChatTemplate));
            foreach (var (name, run) in adapters)
            {
                var added = host.Add(name, run);
                Console.Error.WriteLine($"model '{name}': {added.Model.Source} ({added.SharedTensors} tensors shared with the base)");
            }
            Console.Error.WriteLine($"model '{host.BaseName}': {host.Base.Source}");
            return Serve(OpenAiServer.StartAsync(host, options).GetAwaiter().GetResult());
        }
        if (result.GetValue(ChatTemplate) is not null) throw new ArgumentException("--chat-template applies to language models; the model is an encoder");
        using var encoder = new EncoderHost(model, result.GetValue(Name));
        foreach (var (name, run) in adapters) encoder.Add(name, run);
        Console.Error.WriteLine($"model '{encoder.BaseName}': embeddings ({encoder.Embedder.Pooling} pooling{(encoder.Embedder.Normalize ? ", normalised" : "")})"
            + (encoder.TaskModels.Count > 0 ? $"; task models: {string.Join(", ", encoder.TaskModels)}" : ""));
        return Serve(OpenAiServer.StartAsync(encoder, options).GetAwaiter().GetResult());
    }

    static int Serve(OpenAiServer server)
    {
        Console.Error.WriteLine($"listening on {server.Address} (OpenAI API under {server.Address}v1; SIGTERM or Ctrl-C finishes the requests in flight, then exits)");
        server.WaitForShutdownAsync().GetAwaiter().GetResult();
        server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Console.Error.WriteLine("stopped");
        return 0;
    }

    static (string Name, string Run) ParseAdapter(string text)
    {
        int equals = text.IndexOf('=');
        if (equals <= 0 || equals == text.Length - 1) throw new ArgumentException($"--adapter '{text}': expected name=RUN_FOLDER");
        return (text[..equals].Trim(), text[(equals + 1)..].Trim());
    }

    static string? NonEmpty(string? text) => string.IsNullOrEmpty(text) ? null : text;
}
