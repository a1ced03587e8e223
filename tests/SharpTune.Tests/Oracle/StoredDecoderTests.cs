using LLama.Native;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Generation;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Quantized;
using SharpTune.Peft;
using SharpTune.Tests.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Oracle;

/// <summary>
/// Files llama.cpp quantized itself, loaded with their weight matrices kept in the file's blocks (<c>--dtype stored</c>):
/// perplexity within 0.5 % of llama.cpp's for every type (activations rounded as ggml rounds them), no dense copy of a
/// matrix, and training over the blocks equal to training over the same weights dequantized.
/// </summary>
[Trait("Category", "NumericParity")]
public class StoredDecoderTests
{
    static readonly TinyDecoderSizes Sizes = TinyDecoderSizes.Quantizable;

    /// <summary>A tiny random llama written in F32, then quantized by llama.cpp to <paramref name="type"/>.</summary>
    static string Quantized(TestModels.TempFolder temp, LLamaFtype type, string family = "llama", bool tied = false)
    {
        string source = temp.File($"{family}-f32.gguf"), quantized = temp.File($"{family}-{type}.gguf");
        var hf = GgufTestModels.HfLlama(Sizes, bias: family == "qwen2", tied: tied)
            .ToDictionary(kv => kv.Key, kv => kv.Value.dim() == 2 ? kv.Value / MathF.Sqrt(kv.Value.shape[1]) : kv.Value);
        GgufTestModels.WriteLlama(source, family, Sizes, hf);
        LlamaCpp.Quantize(source, quantized, type);
        return quantized;
    }

    static int[] Tokens(int count, int seed = 11)
    {
        var random = new Random(seed);
        return [1, .. Enumerable.Range(0, count - 1).Select(_ => random.Next(3, Sizes.Vocab))];
    }

    static double LlamaCppPerplexity(string path, int[] tokens)
    {
        using var reference = new LlamaCpp(path);
        var logits = reference.Logits(tokens);
        double nll = 0;
        for (int t = 0; t + 1 < tokens.Length; t++)
        {
            double max = logits[t].Max(), sum = logits[t].Sum(v => Math.Exp(v - max));
            nll -= logits[t][tokens[t + 1]] - max - Math.Log(sum);
        }
        return Math.Exp(nll / (tokens.Length - 1));
    }

    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, "llama", false)]
    [InlineData(LLamaFtype.MOSTLY_Q4_0, "llama", false)]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, "llama", false)]
    [InlineData(LLamaFtype.MOSTLY_Q6_K, "llama", true)]
    [InlineData(LLamaFtype.MOSTLY_Q5_K_M, "qwen2", false)]
    [InlineData(LLamaFtype.MOSTLY_Q5_1, "qwen2", true)]
    [InlineData(LLamaFtype.MOSTLY_F16, "llama", false)]
    public void Stored_weights_score_within_half_a_percent_of_llama_cpp(LLamaFtype type, string family, bool tied)
    {
        using var temp = new TestModels.TempFolder();
        string path = Quantized(temp, type, family, tied);
        using var ours = LanguageModel.Load(path, WeightStorage.AsStored);
        Assert.True(ours.IsStored);
        // No Linear weight, embedding or head is a dense parameter: the blocks are the weights.
        var keys = ours.Model.Module.state_dict().Keys.ToList();
        Assert.DoesNotContain(keys, k => k.EndsWith("_proj.weight", StringComparison.Ordinal) || k.Contains("embed_tokens") || k.StartsWith("lm_head", StringComparison.Ordinal));

        var tokens = Tokens(128);
        double theirs = LlamaCppPerplexity(path, tokens);
        double stored = PerplexityScorer.Score(ours.Model, [tokens]).Perplexity;
        Assert.True(Math.Abs(stored / theirs - 1) < 0.005, $"{type}: stored perplexity {stored:F4} vs llama.cpp {theirs:F4}");
    }

    /// <summary>
    /// LoRA over the blocks against LoRA over the same file read dense in float32: equal loss and equal adapter gradients,
    /// since training products use the exact dequantized weight (the input gradient goes back through the blocks).
    /// </summary>
    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, false)]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, true)]
    public void Lora_over_stored_blocks_trains_as_over_the_dequantized_weights(LLamaFtype type, bool checkpointing)
    {
        using var temp = new TestModels.TempFolder();
        string path = Quantized(temp, type);
        var lora = PeftRegistry.Get("lora");
        var settings = new PeftSettings { LoraR = 3, LoraAlpha = 5, LoraTargets = [LinearTargets.AllLinear] };
        var tokens = Tokens(40, seed: 3);
        using var ids = tensor(tokens.Select(t => (long)t).ToArray(), [2, 20]);
        using var mask = ones_like(ids);

        (float Loss, Dictionary<string, float[]> Gradients) Step(WeightStorage storage)
        {
            var shape = (IBackboneShape)LanguageModel.ReadConfig(path);
            using var lm = LanguageModel.Load(path, storage, linears: lora.Linears(settings, shape, DecoderLinears.Plain));
            using var model = new CausalLmModel(lm.Model, null);
            lora.Freeze(model, settings);
            manual_seed(7);
            using (no_grad())
                foreach (var (_, p) in model.named_parameters().Where(p => p.parameter.requires_grad)) p.copy_(randn_like(p) * 0.1);
            if (checkpointing) ((IGradientCheckpointing)lm.Model).GradientCheckpointing = true;
            model.train();
            using var loss = model.Loss(ids, mask, ids);
            loss.backward();
            var gradients = model.named_parameters().Where(p => p.parameter.requires_grad)
                .ToDictionary(p => p.name, p => p.parameter.grad!.data<float>().ToArray());
            return (loss.item<float>(), gradients);
        }

        var dense = Step(ScalarType.Float32);
        var stored = Step(WeightStorage.AsStored);
        Assert.Equal(dense.Loss, stored.Loss, 4);
        Assert.Equal(dense.Gradients.Keys.Order(), stored.Gradients.Keys.Order());
        foreach (var (name, expected) in dense.Gradients)
            Tolerances.AssertClose(expected, stored.Gradients[name], 1e-4, name);
    }
}
