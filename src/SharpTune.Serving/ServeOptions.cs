namespace SharpTune.Serving;

/// <summary>How the server listens and what it accepts. Validates itself; messages name the command-line flags.</summary>
public sealed record ServeOptions
{
    /// <summary>The address to bind: loopback unless asked otherwise.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (tests); the bound address is <see cref="OpenAiServer.Address"/>.</summary>
    public int Port { get; init; } = 8080;
    /// <summary>When set, every request needs <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }
    /// <summary>Largest request body; a larger one is refused with 413.</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;
    /// <summary>Sequences decoded together.</summary>
    public int MaxBatch { get; init; } = 16;
    /// <summary>Requests waiting for a place in the batch; one more gets 429.</summary>
    public int MaxQueue { get; init; } = 64;
    /// <summary>Tokens generated when a request gives no max_tokens (less when the context has less room).</summary>
    public int DefaultMaxTokens { get; init; } = 512;
    /// <summary>Texts one embeddings or classify request may send.</summary>
    public int MaxInputs { get; init; } = 2048;
    /// <summary>How long a stop (SIGTERM) waits for requests in flight.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromMinutes(2);

    public ServeOptions Validate()
    {
        if (string.IsNullOrWhiteSpace(Host)) throw new ArgumentException("--host must not be empty");
        if (Port is < 0 or > 65535) throw new ArgumentException($"--port must be between 0 and 65535, got {Port}");
        if (ApiKey is { Length: 0 }) throw new ArgumentException("--api-key must not be empty");
        if (MaxBodyBytes < 1024) throw new ArgumentException($"--max-body must be at least 1024 bytes, got {MaxBodyBytes}");
        if (MaxBatch < 1) throw new ArgumentException($"--max-batch must be at least 1, got {MaxBatch}");
        if (MaxQueue < 0) throw new ArgumentException($"--max-queue must be 0 or more, got {MaxQueue}");
        if (DefaultMaxTokens < 1) throw new ArgumentException($"--max-tokens must be at least 1, got {DefaultMaxTokens}");
        if (MaxInputs < 1) throw new ArgumentException($"--max-inputs must be at least 1, got {MaxInputs}");
        return this;
    }
}
