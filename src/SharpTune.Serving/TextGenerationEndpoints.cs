using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using SharpTune.Generation;
using SharpTune.Inference;
using SharpTune.Tokenization.ChatTemplates;

namespace SharpTune.Serving;

/// <summary>
/// <c>POST /v1/chat/completions</c> and <c>POST /v1/completions</c> over a <see cref="LanguageModelHost"/>: the model (base or
/// adapter) named by the request's <c>model</c>, decoded by the shared <see cref="ContinuousBatcher"/>, answered whole or
/// streamed as server-sent events. Stop strings cut the text where they begin, as OpenAI does; a streamed answer holds
/// back the few characters that could start one.
/// </summary>
public sealed class TextGenerationEndpoints(LanguageModelHost host, ContinuousBatcher batcher, ServeOptions options)
{
    static readonly string[] Roles = ["system", "developer", "user", "assistant", "tool"];

    public async Task Chat(HttpContext context, JsonRequest request)
    {
        var model = Model(request);
        var messages = Messages(request);
        string prompt;
        try
        {
            prompt = model.Model.RenderChat(messages);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw ApiError.BadRequest($"the messages do not render with the model's chat template: {e.Message}", "messages");
        }
        var ids = model.Model.Tokenizer.Encode(prompt, addSpecialTokens: false, parseSpecial: true);
        await Generate(context, request, model, ids, chat: true);
    }

    public async Task Completion(HttpContext context, JsonRequest request)
    {
        var model = Model(request);
        var prompts = request.Strings("prompt", maxCount: 1)
            ?? throw ApiError.BadRequest("'prompt' is required", "prompt", "missing_required_parameter");
        if (prompts.Count != 1) throw ApiError.BadRequest("'prompt' must be one string", "prompt", "invalid_value");
        var ids = model.Model.Tokenizer.Encode(prompts[0], addSpecialTokens: true);
        await Generate(context, request, model, ids, chat: false);
    }

    HostedLanguageModel Model(JsonRequest request)
    {
        string name = request.RequiredString("model");
        return host.TryGet(name, out var model) ? model
            : throw new ApiError(404, $"The model '{name}' does not exist; served: {string.Join(", ", host.Models.Select(m => m.Name))}", "model", "model_not_found");
    }

    static List<ChatMessage> Messages(JsonRequest request)
    {
        if (!request.Root.TryGetProperty("messages", out var array) || array.ValueKind == JsonValueKind.Null)
            throw ApiError.BadRequest("'messages' is required", "messages", "missing_required_parameter");
        if (array.ValueKind != JsonValueKind.Array || array.GetArrayLength() == 0)
            throw ApiError.BadRequest("'messages' must be a non-empty array", "messages", "invalid_type");
        var messages = new List<ChatMessage>();
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (item.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest($"'{at}' must be an object", at, "invalid_type");
            string? role = item.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
            if (role is null || !Roles.Contains(role))
                throw ApiError.BadRequest($"'{at}.role' must be one of {string.Join(", ", Roles)}", $"{at}.role", "invalid_value");
            messages.Add(new ChatMessage(role == "developer" ? "system" : role, Content(item, at)));
        }
        return messages;
    }

    /// <summary>A string, or an array of text parts (<c>{"type": "text", "text": "..."}</c>), joined.</summary>
    static string Content(JsonElement message, string at)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null) return "";
        if (content.ValueKind == JsonValueKind.String) return content.GetString()!;
        if (content.ValueKind != JsonValueKind.Array)
            throw ApiError.BadRequest($"'{at}.content' must be a string or an array of text parts", $"{at}.content", "invalid_type");
        var text = new StringBuilder();
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String
                || type.GetString() != "text" || !part.TryGetProperty("text", out var value) || value.ValueKind != JsonValueKind.String)
                throw ApiError.BadRequest($"'{at}.content' parts must be {{\"type\": \"text\", \"text\": \"...\"}} (only text is supported)", $"{at}.content", "invalid_value");
            text.Append(value.GetString());
        }
        return text.ToString();
    }

    GenerationOptions Options(JsonRequest request, HostedLanguageModel model, int promptTokens)
    {
        int context = model.Model.Model.Info.ContextLength;
        int room = context - promptTokens;
        if (room < 1)
            throw ApiError.BadRequest($"the prompt has {promptTokens} tokens; the model's context is {context}", "messages", "context_length_exceeded");
        long? asked = request.Integer("max_completion_tokens", 1, int.MaxValue) ?? request.Integer("max_tokens", 1, int.MaxValue);
        if (asked > room)
            throw ApiError.BadRequest($"max_tokens is {asked}, but the prompt's {promptTokens} tokens leave {room} of the model's context of {context}",
                "max_tokens", "context_length_exceeded");
        request.Integer("n", 1, 1);
        double temperature = request.Number("temperature", 0, 2) ?? 1.0;
        double topP = request.Number("top_p", 0, 1) ?? 1.0;
        if (topP == 0) throw ApiError.BadRequest("'top_p' must be above 0", "top_p", "invalid_value");
        var stops = request.Strings("stop", maxCount: 4, allowEmptyStrings: false) ?? [];
        long seed = request.Integer("seed", long.MinValue, long.MaxValue) ?? Random.Shared.NextInt64();
        return new GenerationOptions
        {
            MaxNewTokens = (int)(asked ?? Math.Min(room, options.DefaultMaxTokens)), Greedy = temperature == 0,
            Temperature = temperature == 0 ? 1 : temperature, TopK = 0, TopP = topP, Seed = seed, StopStrings = stops,
            StopTokens = model.Model.Tokenizer.StopIds,
        };
    }

    async Task Generate(HttpContext context, JsonRequest request, HostedLanguageModel model, IReadOnlyList<int> prompt, bool chat)
    {
        var generation = Options(request, model, prompt.Count);
        bool stream = request.Bool("stream", false);
        bool usageInStream = request.Object("stream_options") is { } so && so.TryGetProperty("include_usage", out var u) && u.ValueKind == JsonValueKind.True;
        var abort = context.RequestAborted;
        await using var updates = GenerationStream.Run(batcher, model.Model.Model, model.Model.Tokenizer, prompt, generation, model.RunsAlone, abort)
            .GetAsyncEnumerator(abort);
        try
        {
            await updates.MoveNextAsync();                                   // queues the request: a full queue throws here
        }
        catch (QueueFullException e)
        {
            throw new ApiError(429, e.Message, null, "rate_limit_exceeded", "rate_limit_error");
        }
        catch (ArgumentException e)
        {
            throw ApiError.BadRequest(e.Message);
        }
        catch (ObjectDisposedException)
        {
            throw new ApiError(503, "the server is shutting down", null, "unavailable", "server_error");
        }

        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (!stream)
        {
            var text = new StringBuilder(updates.Current.Text);
            while (updates.Current.Finish is null && await updates.MoveNextAsync()) text.Append(updates.Current.Text);
            var last = updates.Current;
            var body = Envelope(id, created, model.Name, chat ? "chat.completion" : "text_completion");
            body["choices"] = new JsonArray(Choice(chat, text.ToString(), Finish(last.Finish!.Value)));
            body["usage"] = Usage(last.PromptTokens, last.CompletionTokens);
            await ServerResponses.Json(context, 200, body);
            return;
        }

        context.Response.StatusCode = 200;
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        if (chat) await Event(context, Chunk(id, created, model.Name, chat, new JsonObject { ["role"] = "assistant", ["content"] = "" }, null), abort);
        while (true)
        {
            var update = updates.Current;
            if (update.Text.Length > 0) await Event(context, Chunk(id, created, model.Name, chat, Piece(chat, update.Text), null), abort);
            if (update.Finish is { } finish)
            {
                await Event(context, Chunk(id, created, model.Name, chat, chat ? new JsonObject() : Piece(chat, ""), Finish(finish)), abort);
                if (usageInStream)
                {
                    var usage = Envelope(id, created, model.Name, chat ? "chat.completion.chunk" : "text_completion");
                    usage["choices"] = new JsonArray();
                    usage["usage"] = Usage(update.PromptTokens, update.CompletionTokens);
                    await Event(context, usage, abort);
                }
                break;
            }
            if (!await updates.MoveNextAsync()) break;
        }
        await context.Response.WriteAsync("data: [DONE]\n\n", abort);
        await context.Response.Body.FlushAsync(abort);
    }

    static JsonObject Piece(bool chat, string text) => chat ? new JsonObject { ["content"] = text } : new JsonObject { ["text"] = text };

    static string Finish(FinishReason reason) => reason is FinishReason.StopToken or FinishReason.StopString ? "stop" : "length";

    static JsonObject Envelope(string id, long created, string model, string kind) =>
        new() { ["id"] = id, ["object"] = kind, ["created"] = created, ["model"] = model };

    static JsonObject Usage(int prompt, int completion) =>
        new() { ["prompt_tokens"] = prompt, ["completion_tokens"] = completion, ["total_tokens"] = prompt + completion };

    static JsonObject Choice(bool chat, string text, string finish)
    {
        var choice = new JsonObject { ["index"] = 0 };
        if (chat) choice["message"] = new JsonObject { ["role"] = "assistant", ["content"] = text };
        else { choice["text"] = text; choice["logprobs"] = null; }
        choice["finish_reason"] = finish;
        return choice;
    }

    static JsonObject Chunk(string id, long created, string model, bool chat, JsonObject piece, string? finish)
    {
        var body = Envelope(id, created, model, chat ? "chat.completion.chunk" : "text_completion");
        var choice = new JsonObject { ["index"] = 0 };
        if (chat) choice["delta"] = piece;
        else { choice["text"] = piece["text"]!.GetValue<string>(); choice["logprobs"] = null; }
        choice["finish_reason"] = finish;
        body["choices"] = new JsonArray(choice);
        return body;
    }

    static async Task Event(HttpContext context, JsonObject data, CancellationToken abort)
    {
        await context.Response.WriteAsync("data: " + data.ToJsonString() + "\n\n", abort);
        await context.Response.Body.FlushAsync(abort);
    }
}
