using System.CommandLine;
using System.Globalization;
using SharpTune.Generation;
using SharpTune.Models.Decoders;

namespace SharpTune.Cli.Commands;

/// <summary>
/// The flags of every command that generates (generate, chat): sampling, stop strings, seed, the weights' dtype and
/// quiet, declared once, with <see cref="GenerationOptions"/>' defaults; a command chooses only how many new tokens it
/// allows by default (a reply is longer than a continuation).
/// </summary>
sealed class GenerationFlags
{
    static readonly GenerationOptions Defaults = new();

    public Option<int> MaxNewTokens { get; }
    public Option<bool> Greedy { get; } = new("--greedy") { Description = "Always take the most likely token" };
    public Option<double> Temperature { get; } = new("--temperature") { Description = $"Sampling temperature (default {Invariant(Defaults.Temperature)})", DefaultValueFactory = _ => Defaults.Temperature };
    public Option<int> TopK { get; } = new("--top-k") { Description = $"Sample among the K most likely tokens; 0 for all (default {Defaults.TopK})", DefaultValueFactory = _ => Defaults.TopK };
    public Option<double> TopP { get; } = new("--top-p") { Description = $"Sample among the most likely tokens whose probabilities reach P (default {Invariant(Defaults.TopP)})", DefaultValueFactory = _ => Defaults.TopP };
    public Option<double> RepetitionPenalty { get; } = new("--repetition-penalty") { Description = $"Penalise tokens already present; 1 is off (default {Invariant(Defaults.RepetitionPenalty)})", DefaultValueFactory = _ => Defaults.RepetitionPenalty };
    public Option<string[]> Stop { get; } = new("--stop") { Description = "A text that ends the generation (repeatable)" };
    public Option<long> Seed { get; } = new("--seed") { Description = $"Seed of the sampling (default {Defaults.Seed})", DefaultValueFactory = _ => Defaults.Seed };
    public Option<string> DType { get; } = WeightsOption();
    public Option<bool> Quiet { get; } = new("--quiet", "-q") { Description = "Nothing on stderr but errors: no model line or speed figures (load time, prompt and generation tokens/s)" };

    /// <param name="maxNewTokens">The command's default for <c>--max-new-tokens</c>.</param>
    /// <param name="what">What the limit applies to, for the help (tokens per reply, tokens to generate).</param>
    public GenerationFlags(int maxNewTokens, string what) =>
        MaxNewTokens = new("--max-new-tokens") { Description = $"{what} at most (default {maxNewTokens})", DefaultValueFactory = _ => maxNewTokens };

    /// <summary>Every flag, to add to a command.</summary>
    public IEnumerable<Option> All => [MaxNewTokens, Greedy, Temperature, TopK, TopP, RepetitionPenalty, Stop, Seed, DType, Quiet];

    /// <summary>The options the flags give, stopping at <paramref name="lm"/>'s end-of-turn tokens; validated.</summary>
    public GenerationOptions Options(ParseResult result, LanguageModel lm) => new GenerationOptions
    {
        MaxNewTokens = result.GetValue(MaxNewTokens), Greedy = result.GetValue(Greedy), Temperature = result.GetValue(Temperature),
        TopK = result.GetValue(TopK), TopP = result.GetValue(TopP), RepetitionPenalty = result.GetValue(RepetitionPenalty),
        Seed = result.GetValue(Seed), StopStrings = result.GetValue(Stop) ?? [], StopTokens = lm.Tokenizer.StopIds,
    }.Validate();

    public WeightStorage Weights(ParseResult result) => ParseWeights(result.GetValue(DType)!);

    public TextWriter Diagnostics(ParseResult result) => result.GetValue(Quiet) ? TextWriter.Null : Console.Error;

    /// <summary><c>--dtype</c> of the commands that run a language model (generate, chat, eval).</summary>
    public static Option<string> WeightsOption(string? prefix = null) => new("--dtype")
    {
        Description = prefix + "Weights: stored (default; a GGUF's matrices as the file keeps them, quantized or not, memory-mapped; a folder's in fp32), fp32, bf16, "
                      + "or a Hugging Face folder's matrices quantized on load as llama.cpp quantizes them (q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)",
        DefaultValueFactory = _ => "stored",
    };

    public static WeightStorage ParseWeights(string text)
    {
        string name = text.Trim().ToLowerInvariant();
        return WeightStorage.Parse(name is "f32" ? "fp32" : name);
    }

    static string Invariant(double value) => value.ToString(CultureInfo.InvariantCulture);
}
