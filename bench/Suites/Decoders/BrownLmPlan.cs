using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// The sizes and budgets of the Brown language-model suite (<c>lm</c>): the Llama-family base it pretrains from scratch
/// on informative prose (genres A–J), and the adaptation every method gets on imaginative prose (K–R). Sized so the
/// whole suite takes about 50 minutes on the project's 2-core AMD EPYC (13 to pretrain, 2 to 3 a method; docs/results.md).
/// </summary>
/// <param name="Hidden">H. GPT-2's 50,257-token embedding is V·H parameters (12.9M at 256), tied with the output head.</param>
/// <param name="BlockLength">T: texts are concatenated (each ended by &lt;|endoftext|&gt;) and cut into rows of T tokens.</param>
/// <param name="PretrainTokens">Tokens of A–J the base trains on (steps = tokens / (batch·T)): about two epochs of the 771k
/// (after 0.78 of one, the base's held-out perplexity was still 855 on A–J and 752 on K–R: unigram statistics and little more).
/// Small batches: at a fixed budget of tokens, more steps take a model this small off the unigram plateau sooner (at 8
/// rows a step and lr 1.5e-3 the loss still sat at 7.2 after 250k tokens).</param>
/// <param name="AdaptSteps">Optimizer steps every method gets on K–R, at <paramref name="AdaptBatch"/> rows each.</param>
/// <param name="FrozenLayers">K in freeze:K (the embeddings and the bottom K layers frozen).</param>
/// <param name="InformativeEvalRows">Held-out A–J rows scored (spread evenly over the files); null: all of them.</param>
/// <param name="ImaginativeEvalRows">Held-out K–R rows scored, the same for every method; null: all of them.</param>
public sealed record BrownLmPlan(
    int Hidden, int Layers, int Heads, int Intermediate, int BlockLength,
    long PretrainTokens, int PretrainBatch, double PretrainLearningRate,
    int AdaptSteps, int AdaptBatch, int FrozenLayers, int? InformativeEvalRows, int? ImaginativeEvalRows)
{
    public const int Seed = 42;

    public static readonly BrownLmPlan Full = new(
        Hidden: 256, Layers: 6, Heads: 4, Intermediate: 768, BlockLength: 256,
        PretrainTokens: 1_600_000, PretrainBatch: 4, PretrainLearningRate: 2e-3,
        AdaptSteps: 100, AdaptBatch: 8, FrozenLayers: 3, InformativeEvalRows: null, ImaginativeEvalRows: null);

    /// <summary>A smoke run of every part in a couple of minutes: a tiny model, a few steps, part of the test files.</summary>
    public static readonly BrownLmPlan Quick = new(
        Hidden: 64, Layers: 2, Heads: 2, Intermediate: 160, BlockLength: 128,
        PretrainTokens: 16_384, PretrainBatch: 8, PretrainLearningRate: 3e-3,
        AdaptSteps: 4, AdaptBatch: 4, FrozenLayers: 1, InformativeEvalRows: 24, ImaginativeEvalRows: 24);

    /// <summary>
    /// A base a busy 2-core machine can pretrain in about a quarter of an hour (SHARPTUNE_BENCH_LM_PLAN=small): half the width,
    /// 4 layers, rows of 128, 128k tokens of A–J (a sixth of an epoch, so a base that has learnt little beyond word
    /// frequencies), 100 adaptation steps of 4 rows, 128 held-out rows of each split. Its base is lm-base-small.
    /// </summary>
    public static readonly BrownLmPlan Small = new(
        Hidden: 128, Layers: 4, Heads: 4, Intermediate: 384, BlockLength: 128,
        PretrainTokens: 131_072, PretrainBatch: 8, PretrainLearningRate: 3e-3,
        AdaptSteps: 100, AdaptBatch: 4, FrozenLayers: 2, InformativeEvalRows: 128, ImaginativeEvalRows: 128);

    /// <summary>The environment variable that picks <see cref="Small"/> over <see cref="Full"/> (read by every process of a suite).</summary>
    public const string PlanVariable = "SHARPTUNE_BENCH_LM_PLAN";

    public static bool SmallChosen => Environment.GetEnvironmentVariable(PlanVariable) == "small";

    public static BrownLmPlan For(bool quick) => quick ? Quick : SmallChosen ? Small : Full;

    public int PretrainSteps => (int)Math.Max(1, PretrainTokens / ((long)PretrainBatch * BlockLength));

    /// <summary>The base's Hugging Face config: Llama with tied embeddings and full multi-head attention.</summary>
    public JsonObject LlamaConfig(int vocabulary, int endOfText) => new()
    {
        ["model_type"] = "llama",
        ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["vocab_size"] = vocabulary,
        ["hidden_size"] = Hidden,
        ["intermediate_size"] = Intermediate,
        ["num_hidden_layers"] = Layers,
        ["num_attention_heads"] = Heads,
        ["num_key_value_heads"] = Heads,
        // Room for a block plus a prompt method's virtual tokens; rotary positions have no table to size.
        ["max_position_embeddings"] = 2 * BlockLength,
        ["rms_norm_eps"] = 1e-5,
        ["rope_theta"] = 10000.0,
        ["tie_word_embeddings"] = true,
        ["bos_token_id"] = endOfText,
        ["eos_token_id"] = endOfText,
    };

    /// <summary>What the cached base depends on: these sizes and budgets, and the bytes of the data files.</summary>
    public string Fingerprint(IEnumerable<string> dataFiles)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes((this with { AdaptSteps = 0, AdaptBatch = 0, FrozenLayers = 0 }).ToString()));
        foreach (string file in dataFiles) hash.AppendData(File.ReadAllBytes(file));
        return Convert.ToHexStringLower(hash.GetHashAndReset())[..16];
    }
}
