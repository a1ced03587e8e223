using System.Globalization;

namespace SharpTune.Generation;

/// <summary>
/// How long generation took, split as llama.cpp reports it: the prompt (one forward pass over every prompt token, which
/// also yields the first new token) and the generation (one forward pass per further token).
/// </summary>
/// <param name="PromptTokens">Real prompt tokens (padding left out).</param>
/// <param name="GeneratedTokens">Tokens sampled, the first (from the prompt's pass) and any stop token included.</param>
/// <param name="DecodedTokens">Tokens sampled by the passes after the prompt's: what the generation rate counts.</param>
public sealed record GenerationTiming(int PromptTokens, double PromptSeconds, int GeneratedTokens, int DecodedTokens, double DecodeSeconds)
{
    public static GenerationTiming Zero { get; } = new(0, 0, 0, 0, 0);

    public double PromptTokensPerSecond => PromptSeconds > 0 ? PromptTokens / PromptSeconds : 0;

    public double DecodeTokensPerSecond => DecodeSeconds > 0 ? DecodedTokens / DecodeSeconds : 0;

    public static GenerationTiming operator +(GenerationTiming a, GenerationTiming b) => new(
        a.PromptTokens + b.PromptTokens, a.PromptSeconds + b.PromptSeconds, a.GeneratedTokens + b.GeneratedTokens,
        a.DecodedTokens + b.DecodedTokens, a.DecodeSeconds + b.DecodeSeconds);

    /// <summary><c>prompt 12 tokens, 345.6 tokens/s; generated 32 tokens, 21.3 tokens/s</c>.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"prompt {PromptTokens} tokens, {PromptTokensPerSecond:F1} tokens/s; generated {GeneratedTokens} tokens, {DecodeTokensPerSecond:F1} tokens/s");
}
