using LLama.Native;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Generation;
using SharpTune.Models.Decoders;
using SharpTune.Tests.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Oracle;

/// <summary>
/// Tiny random decoders of each family written as GGUF, run by SharpTune and by llama.cpp on the same file: the same
/// per-position logits (F32), the same greedy continuation, and, for files llama.cpp quantized itself, the same
/// perplexity within what llama.cpp's quantized activations allow.
/// </summary>
[Trait("Category", "NumericParity")]
public class DecoderLogitsTests
{
    // Odd sizes, grouped-query attention (6 heads, 2 key/value heads), a vocabulary with the 256 byte tokens llama.cpp's tokenizer wants.
    static readonly TinyDecoderSizes Sizes = new(Vocab: 301, Hidden: 48, Layers: 2, Heads: 6, KvHeads: 2, Intermediate: 83, Positions: 96);
    static readonly int[] Tokens = [1, 17, 260, 5, 99, 42, 300, 3, 128, 77, 260, 261, 9];

    static string Write(TestModels.TempFolder temp, string family, TinyDecoderSizes sizes, bool tied = false)
    {
        string path = temp.File($"{family}.gguf");
        GgufTestModels.WriteLlama(path, family, sizes, Scaled(GgufTestModels.HfLlama(sizes, bias: family == "qwen2", tied: tied)));
        return path;
    }

    /// <summary>
    /// Matrices at the scale of a trained model (1/sqrt of the input size; the embedding, which a tied head reuses, by
    /// 1/sqrt of the hidden size), so logits are of order one: neither flat nor so peaked that rounding flips the loss.
    /// </summary>
    static Dictionary<string, Tensor> Scaled(Dictionary<string, Tensor> hf) => hf.ToDictionary(kv => kv.Key,
        kv => kv.Value.dim() == 2 ? kv.Value / MathF.Sqrt(kv.Value.shape[1]) : kv.Value);

    [Theory]
    [InlineData("llama", false)]
    [InlineData("llama", true)]
    [InlineData("qwen2", false)]
    public void Logits_equal_llama_cpp_on_the_same_f32_file(string family, bool tied)
    {
        using var temp = new TestModels.TempFolder();
        string path = Write(temp, family, Sizes, tied);
        using var ours = LanguageModel.Load(path);
        using var reference = new LlamaCpp(path);
        Assert.Equal(Sizes.Vocab, reference.VocabSize);

        using var ids = tensor(Tokens.Select(t => (long)t).ToArray()).unsqueeze(0);
        using var noGrad = no_grad();
        using var logits = ours.Model.Forward(ids)[0];                                   // (T, V)
        var expected = reference.Logits(Tokens);
        for (int t = 0; t < Tokens.Length; t++)
            Tolerances.AssertClose(expected[t], logits[t].data<float>().ToArray(), 1e-4, $"{family} position {t}");
    }

    /// <summary>
    /// A Llama 3.1-style file: rope scaling given only as llama.cpp's per-frequency factors (<c>rope_freqs.weight</c>).
    /// SharpTune derives the llama3 rope_scaling from them and matches llama.cpp, which applies the factors; the same
    /// weights without the factors do not.
    /// </summary>
    [Fact]
    public void Rope_frequency_factors_are_applied_as_llama_cpp_applies_them()
    {
        using var temp = new TestModels.TempFolder();
        // head_dim 16 over theta 10000: wavelengths 6.3 to 19869, so the factors keep two, blend four and divide two.
        var sizes = new TinyDecoderSizes(Vocab: 301, Hidden: 64, Layers: 2, Heads: 4, KvHeads: 2, Intermediate: 83, Positions: 96);
        var hf = Scaled(GgufTestModels.HfLlama(sizes, bias: false, tied: false));
        var factors = Models.Decoders.RopeFrequencyFactorsTests.ConverterFactors(sizes.HeadDim, 10000, 4, 0.5, 32, 1024);
        string path = temp.File("llama31.gguf"), plain = temp.File("llama.gguf");
        using var factorTensor = tensor(factors);
        GgufTestModels.WriteLlama(path, "llama", sizes, hf, edit: w => w.AddTensor("rope_freqs.weight", factorTensor));
        GgufTestModels.WriteLlama(plain, "llama", sizes, hf);

        using var ours = LanguageModel.Load(path);
        Assert.Contains(ours.Notes, n => n.StartsWith("rope_freqs.weight applied as Llama 3 rope scaling: factor 4", StringComparison.Ordinal));
        using var unscaled = LanguageModel.Load(plain);
        using var reference = new LlamaCpp(path);
        using var ids = tensor(Tokens.Select(t => (long)t).ToArray()).unsqueeze(0);
        using var noGrad = no_grad();
        using var logits = ours.Model.Forward(ids)[0];                                   // (T, V)
        using var without = unscaled.Model.Forward(ids)[0];
        var expected = reference.Logits(Tokens);
        for (int t = 0; t < Tokens.Length; t++)
            Tolerances.AssertClose(expected[t], logits[t].data<float>().ToArray(), 1e-4, $"position {t}");
        double apart = Enumerable.Range(1, Tokens.Length - 1)
            .Max(t => expected[t].Zip(without[t].data<float>().ToArray(), (a, b) => Math.Abs(a - b)).Max());
        Assert.True(apart > 1e-2, $"without the factors the logits should differ from llama.cpp's, differ by at most {apart}");
    }

    /// <summary>GPT-2 with GPT-2's own vocabulary and merges (llama.cpp needs a real byte-level tokenizer for this architecture).</summary>
    [Fact]
    public void Gpt2_logits_and_tokens_equal_llama_cpp()
    {
        using var temp = new TestModels.TempFolder();
        var sizes = new TinyDecoderSizes(Vocab: Tokenization.Decoders.Gpt2Reference.Tokens.Length, Hidden: 48, Layers: 2, Heads: 6, KvHeads: 6, Intermediate: 83, Positions: 96);
        // Conv1D weights are [in, out]: scale by the input size, the first dimension.
        var hf = GgufTestModels.HfGpt2(sizes).ToDictionary(kv => kv.Key, kv => kv.Value.dim() != 2 ? kv.Value
            : kv.Key.Contains(".attn.") || kv.Key.Contains(".mlp.") ? kv.Value / MathF.Sqrt(kv.Value.shape[0]) : kv.Value / MathF.Sqrt(kv.Value.shape[1]));
        string path = temp.File("gpt2.gguf");
        var tokens = Tokenization.Decoders.Gpt2Reference.Tokens;
        GgufTestModels.WriteGpt2(path, sizes, hf, w => w
            .Set("tokenizer.ggml.model", "gpt2").Set("tokenizer.ggml.pre", "gpt-2")
            .Set("tokenizer.ggml.tokens", tokens).Set("tokenizer.ggml.merges", Tokenization.Decoders.Gpt2Reference.Merges)
            .Set("tokenizer.ggml.token_type", tokens.Select(t => t == "<|endoftext|>" ? 3 : 1).ToArray())
            .Set("tokenizer.ggml.bos_token_id", 50256u).Set("tokenizer.ggml.eos_token_id", 50256u));
        using var ours = LanguageModel.Load(path);
        using var reference = new LlamaCpp(path);
        string text = "Hello world, 42 dragons flew over   Zürich 東京 🙂";
        var ids = reference.Tokenize(text, addBos: false, special: false);
        Assert.Equal(ids, ours.Tokenizer.Encode(text, addSpecialTokens: false));

        using var input = tensor(ids.Select(t => (long)t).ToArray()).unsqueeze(0);
        using var noGrad = no_grad();
        using var logits = ours.Model.Forward(input)[0];
        var expected = reference.Logits(ids);
        // ggml's CPU GELU reads a precomputed f16 table (GGML_GELU_FP16 in ggml-cpu/vec.h), so llama.cpp's GPT-2 MLP rounds
        // to f16 (relative 4.9e-4); Llama's SiLU has no such table and is held to 1e-4 above.
        for (int t = 0; t < ids.Length; t++)
            Tolerances.AssertClose(expected[t], logits[t].data<float>().ToArray(), 1e-3, $"gpt2 position {t}");
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void Greedy_generation_equals_llama_cpp(string family)
    {
        using var temp = new TestModels.TempFolder();
        string path = Write(temp, family, Sizes);
        using var ours = LanguageModel.Load(path);
        using var reference = new LlamaCpp(path);
        int[] prompt = [1, 40, 41, 42];
        var generated = new TextGenerator(ours.Model, new GenerationOptions { Greedy = true, MaxNewTokens = 20 }).Generate([prompt]).Single();
        Assert.Equal(reference.Greedy(prompt, 20), generated.TokenIds);
    }

    /// <summary>
    /// SharpTune dequantizes (exactly as ggml does, GgufDequantizeTests) and multiplies in fp32; llama.cpp multiplies the
    /// quantized blocks by activations it quantizes itself: to Q8_0 (blocks of 32) for Q8_0 and Q4_0 weights, to Q8_K
    /// (blocks of 256, so a coarser step) for the K-quants. The perplexities therefore differ by that rounding alone:
    /// within 0.5 % for the Q8_0-activation types and 1 % for the K-quants on these small random models.
    /// </summary>
    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, 0.005)]
    [InlineData(LLamaFtype.MOSTLY_Q4_0, 0.005)]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, 0.01)]
    [InlineData(LLamaFtype.MOSTLY_Q6_K, 0.01)]
    public void Quantized_files_give_llama_cpps_perplexity(LLamaFtype type, double tolerance) =>
        QuantizedPerplexity(type, TinyDecoderSizes.Quantizable, tolerance);

    /// <summary>
    /// Rows that are not a multiple of 256 (Qwen2.5-0.5B's 896): llama.cpp's Q4_K_M then stores those tensors as Q5_0,
    /// Q5_1 or Q8_0, which a file Ollama pulls therefore contains. It must load and score as llama.cpp scores it.
    /// </summary>
    [Fact]
    public void A_q4_k_m_file_with_rows_k_quants_cannot_hold_loads_and_scores_as_llama_cpp()
    {
        var sizes = new TinyDecoderSizes(Vocab: 301, Hidden: 96, Layers: 2, Heads: 6, KvHeads: 2, Intermediate: 160, Positions: 128);
        var types = QuantizedPerplexity(LLamaFtype.MOSTLY_Q4_K_M, sizes, 0.01);
        Assert.Contains(types, t => t is GgufTensorType.Q5_0 or GgufTensorType.Q5_1 or GgufTensorType.Q4_1);
    }

    static IReadOnlyList<GgufTensorType> QuantizedPerplexity(LLamaFtype type, TinyDecoderSizes sizes, double tolerance)
    {
        using var temp = new TestModels.TempFolder();
        string source = Write(temp, "llama", sizes), quantized = temp.File("quantized.gguf");
        NativeApi.llama_empty_call();
        Assert.True(LLama.LLamaQuantizer.Quantize(source, quantized, type, nthread: 2, allowRequantize: true, quantizeOutputTensor: true));
        using var ours = LanguageModel.Load(quantized);
        using var reference = new LlamaCpp(quantized);
        var random = new Random(11);
        int[] tokens = [1, .. Enumerable.Range(0, 127).Select(_ => random.Next(3, sizes.Vocab))];

        double ourPerplexity = PerplexityScorer.Score(ours.Model, [tokens]).Perplexity;
        double theirs = reference.Perplexity(tokens);
        Assert.True(Math.Abs(ourPerplexity / theirs - 1) < tolerance, $"{type}: perplexity {ourPerplexity:F3} vs llama.cpp {theirs:F3}");
        return GgufFile.Open(quantized).Tensors.Select(t => t.Type).Distinct().ToList();
    }
}
