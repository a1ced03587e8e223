using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using SharpTune.Generation;
using SharpTune.Inference;

namespace SharpTune.Serving;

/// <summary>
/// An OpenAI-compatible HTTP server (Kestrel, minimal API) over one base model and the fine-tuned models served with it:
/// <c>GET /v1/models</c>; for a decoder <c>POST /v1/chat/completions</c> and <c>POST /v1/completions</c> (continuous
/// batching, streaming as server-sent events); for an encoder <c>POST /v1/embeddings</c> and <c>POST /v1/classify</c>.
/// Every refused request gets OpenAI's error JSON and a 4xx; a stop (SIGTERM, <see cref="StopAsync"/>) lets the requests in
/// flight finish before the server goes. The server does not own the hosts it is given.
/// </summary>
public sealed class OpenAiServer : IAsyncDisposable
{
    readonly WebApplication app;
    readonly ContinuousBatcher? batcher;

    OpenAiServer(WebApplication app, ContinuousBatcher? batcher, Uri address)
    {
        this.app = app;
        this.batcher = batcher;
        Address = address;
    }

    /// <summary>Where the server listens, with the port it got (for port 0).</summary>
    public Uri Address { get; }

    /// <summary>The decoder's batcher (null for an encoder), for its load figures.</summary>
    public ContinuousBatcher? Batcher => batcher;

    public static Task<OpenAiServer> StartAsync(LanguageModelHost host, ServeOptions options, ILoggerProvider? log = null)
    {
        var batcher = new ContinuousBatcher(options.MaxBatch, options.MaxQueue);
        var text = new TextGenerationEndpoints(host, batcher, options);
        var names = host.Models.Select(m => m.Name).ToList();
        return StartAsync(options, names, batcher, log, app =>
        {
            app.MapPost("/v1/chat/completions", context => Handle(context, options, text.Chat));
            app.MapPost("/v1/completions", context => Handle(context, options, text.Completion));
        });
    }

    public static Task<OpenAiServer> StartAsync(EncoderHost host, ServeOptions options, ILoggerProvider? log = null)
    {
        var encoder = new EncoderEndpoints(host, options);
        var names = new[] { host.BaseName }.Concat(host.TaskModels).ToList();
        return StartAsync(options, names, null, log, app =>
        {
            app.MapPost("/v1/embeddings", context => Handle(context, options, encoder.Embeddings));
            app.MapPost("/v1/classify", context => Handle(context, options, encoder.Classify));
        });
    }

    static async Task<OpenAiServer> StartAsync(ServeOptions options, IReadOnlyList<string> models, ContinuousBatcher? batcher,
        ILoggerProvider? log, Action<WebApplication> map)
    {
        options.Validate();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (log is not null) builder.Logging.AddProvider(log);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.ShutdownTimeout);
        builder.WebHost.UseKestrel(k => k.Limits.MaxRequestBodySize = options.MaxBodyBytes + 1);
        string host = options.Host.Contains(':') && !options.Host.StartsWith('[') ? $"[{options.Host}]" : options.Host;
        builder.WebHost.UseUrls($"http://{host}:{options.Port}");
        var app = builder.Build();

        app.Use((context, next) => Guard(context, next, options));
        app.MapGet("/v1/models", context => ServerResponses.Json(context, 200, ModelList(models)));
        map(app);
        app.MapFallback(context => throw new ApiError(404, $"no endpoint {context.Request.Method} {context.Request.Path}", null, "unknown_url"));
        if (batcher is not null) app.Lifetime.ApplicationStopping.Register(() => batcher.DrainAsync());
        try
        {
            await app.StartAsync();
        }
        catch
        {
            batcher?.Dispose();
            await app.DisposeAsync();
            throw;
        }
        string bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new OpenAiServer(app, batcher, new Uri(bound));
    }

    /// <summary>Waits until the host is told to stop (SIGTERM, Ctrl-C) and has let the requests in flight finish.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancel = default) => app.WaitForShutdownAsync(cancel);

    /// <summary>Stops taking requests, lets those in flight finish (up to the shutdown timeout), then stops.</summary>
    public async Task StopAsync()
    {
        batcher?.DrainAsync();
        await app.StopAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await app.DisposeAsync();
        batcher?.Dispose();
    }

    static JsonObject ModelList(IReadOnlyList<string> models)
    {
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(models.Select(m => (JsonNode)new JsonObject
                { ["id"] = m, ["object"] = "model", ["created"] = created, ["owned_by"] = "sharptune" }).ToArray()),
        };
    }

    /// <summary>The API key, then the endpoint; whatever it throws becomes OpenAI's error shape.</summary>
    static async Task Guard(HttpContext context, RequestDelegate next, ServeOptions options)
    {
        try
        {
            if (options.ApiKey is { } key && context.Request.Headers.Authorization.ToString() != $"Bearer {key}")
                throw new ApiError(401, "missing or wrong API key: send Authorization: Bearer KEY", null, "invalid_api_key");
            await next(context);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; its generation has been stopped.
        }
        catch (ApiError e) when (!context.Response.HasStarted)
        {
            await ServerResponses.Json(context, e.Status, e.ToJson());
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            int status = e.StatusCode is >= 400 and < 500 ? e.StatusCode : 400;
            string code = status == 413 ? "request_too_large" : "bad_request";
            await ServerResponses.Json(context, status, ApiError.Body(e.Message, "invalid_request_error", null, code));
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            var logger = context.RequestServices.GetService<ILoggerFactory>()?.CreateLogger<OpenAiServer>();
            logger?.LogError(e, "request {Path} failed", context.Request.Path);
            await ServerResponses.Json(context, 500, ApiError.Body($"internal error: {e.GetType().Name}: {e.Message}", "server_error", null, null));
        }
    }

    static async Task Handle(HttpContext context, ServeOptions options, Func<HttpContext, JsonRequest, Task> endpoint)
    {
        var body = await ReadBody(context, options.MaxBodyBytes);
        using var request = JsonRequest.Parse(body);
        await endpoint(context, request);
    }

    static async Task<byte[]> ReadBody(HttpContext context, long limit)
    {
        if (context.Request.ContentLength > limit) throw TooLarge(limit);
        using var buffer = new MemoryStream();
        var chunk = new byte[16384];
        int read;
        while ((read = await context.Request.Body.ReadAsync(chunk, context.RequestAborted)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > limit) throw TooLarge(limit);
        }
        return buffer.ToArray();
    }

    static ApiError TooLarge(long limit) => new(413, $"the request body is over the limit of {limit} bytes", null, "request_too_large");
}
