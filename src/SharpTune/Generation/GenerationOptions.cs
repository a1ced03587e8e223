namespace SharpTune.Generation;

/// <summary>
/// How to continue a prompt: greedy or sampled (temperature, top-k, top-p), with a repetition penalty, stop
/// tokens and stop strings, and a seed. Validates itself; messages name the command-line flags.
/// </summary>
public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 128;
    /// <summary>Always the most likely token; the sampling settings are then ignored.</summary>
    public bool Greedy { get; init; }
    public double Temperature { get; init; } = 0.7;
    /// <summary>Keep the K most likely tokens before sampling; 0 keeps all.</summary>
    public int TopK { get; init; } = 40;
    /// <summary>Keep the smallest set of tokens whose probabilities reach P; 1 keeps all.</summary>
    public double TopP { get; init; } = 0.9;
    /// <summary>HF's repetition penalty: logits of tokens already in the sequence are divided (positive) or multiplied (negative) by it; 1 is off.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;
    public long Seed { get; init; } = 42;
    /// <summary>Token ids that end a sequence (the model's end-of-sequence and end-of-turn tokens); not part of the output.</summary>
    public IReadOnlySet<int> StopTokens { get; init; } = new HashSet<int>();
    /// <summary>Texts that end a sequence when the generated text contains them; the output stops before them.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    public GenerationOptions Validate()
    {
        if (MaxNewTokens < 1) throw new ArgumentException($"--max-new-tokens must be at least 1, got {MaxNewTokens}");
        if (!Greedy && !(Temperature > 0 && double.IsFinite(Temperature))) throw new ArgumentException($"--temperature must be positive, got {Temperature} (use --greedy for the most likely token)");
        if (TopK < 0) throw new ArgumentException($"--top-k must be 0 (off) or positive, got {TopK}");
        if (TopP is <= 0 or > 1) throw new ArgumentException($"--top-p must be in (0, 1], got {TopP}");
        if (!(RepetitionPenalty > 0 && double.IsFinite(RepetitionPenalty))) throw new ArgumentException($"--repetition-penalty must be positive, got {RepetitionPenalty}");
        if (StopStrings.Any(string.IsNullOrEmpty)) throw new ArgumentException("--stop strings must not be empty");
        return this;
    }
}

/// <summary>Why a sequence stopped.</summary>
public enum FinishReason { StopToken, StopString, Length, ContextFull }

/// <summary>One prompt's continuation: the generated ids (stop token excluded) and why it ended.</summary>
public sealed record GeneratedSequence(IReadOnlyList<int> TokenIds, FinishReason Finish);
