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
using SharpTune.Tests.Cli;
using static TorchSharp.torch;

namespace SharpTune.Tests.Oracle;

/// <summary>
/// Files llama.cpp quantized itself, loaded with their weight matrices kept in the file's blocks (<c>--dtype stored</c>):
/// perplexity within 0.5 % of llama.cpp's for every type (activations rounded as ggml rounds them), no dense copy of a
/// matrix, and training over the blocks equal to training over the same weights dequantized.
/// </summary>
[Trait("Category", "NumericParity")]
[Collection(nameof(ConsoleCollection))]
public class StoredDecoderTests
{
    static readonly TinyDecoderSizes Sizes = TinyDecoderSizes.Quantizable;

    /// <summary>
    /// A tiny random llama written in F32, then quantized by llama.cpp to <paramref name="type"/>. Norm weights are drawn
    /// around one rather than left at one: with unit norms a normalised row of a quantized embedding is a multiple of one
    /// scale, so its rounding to 8 bits meets exact ties, which two implementations may break differently.
    /// </summary>
    internal static string Quantized(TestModels.TempFolder temp, LLamaFtype type, string family = "llama", bool tied = false)
    {
        string source = temp.File($"{family}-f32.gguf"), quantized = temp.File($"{family}-{type}.gguf");
        GgufTestModels.WriteLlama(source, family, Sizes, Weights(family, tied));
        LlamaCpp.Quantize(source, quantized, type);
        return quantized;
    }

    /// <summary>The random model's Hugging Face tensors: matrices at a trained model's scale, norm weights drawn around one.</summary>
    internal static Dictionary<string, Tensor> Weights(string family = "llama", bool tied = false)
    {
        var generator = new TorchSharp.torch.Generator(17);
        return GgufTestModels.HfLlama(Sizes, bias: family == "qwen2", tied: tied).ToDictionary(kv => kv.Key,
            kv => kv.Value.dim() == 2 ? kv.Value / MathF.Sqrt(kv.Value.shape[1])
                : kv.Key.EndsWith("norm.weight", StringComparison.Ordinal) ? kv.Value * (1 + 0.1 * randn(kv.Value.shape, generator: generator))
                : kv.Value);
    }

    static int[] Tokens(int count, int seed = 11)
    {
        var random = new Random(seed);
        return [1, .. Enumerable.Range(0, count - 1).Select(_ => random.Next(3, Sizes.Vocab))];
    }

    static double LlamaCppPerplexity(string path, int[] tokens)
    {
        using var reference = new LlamaCpp(path);
        return reference.Perplexity(tokens);
    }

    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, "llama", false)]
    [InlineData(LLamaFtype.MOSTLY_Q4_0, "llama", false)]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, "llama", false)]
    [InlineData(LLamaFtype.MOSTLY_Q6_K, "llama", true)]
    [InlineData(LLamaFtype.MOSTLY_Q5_K_M, "qwen2", false)]
    [InlineData(LLamaFtype.MOSTLY_Q5_1, "qwen2", true)]
    [InlineData(LLamaFtype.MOSTLY_F16, "llama", false)]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, "llama", false, true)]
    [InlineData(LLamaFtype.MOSTLY_Q4_0, "qwen2", false, true)]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, "llama", true, true)]
    [InlineData(LLamaFtype.MOSTLY_Q6_K, "qwen2", false, true)]
    public void Stored_weights_score_within_half_a_percent_of_llama_cpp(LLamaFtype type, string family, bool tied, bool bf16Tiles = false)
    {
        // The prompt's products on tiles: fp32 (the product over the dequantized weight) and bf16 (where the CPU multiplies
        // bf16 natively, the default there), each within half a percent.
        using var tiles = QuantizedOps.UseTileDtype(bf16Tiles ? ScalarType.BFloat16 : ScalarType.Float32);
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
        Assert.True(Math.Abs(stored / theirs - 1) < 0.005, $"{type}, {QuantizedOps.TileDtype} tiles: stored perplexity {stored:F4} vs llama.cpp {theirs:F4}");
    }

    /// <summary>
    /// LoRA over the blocks against LoRA over the same file read dense in float32: equal loss and equal adapter gradients,
    /// since training products use the exact dequantized weight (the input gradient goes back through the blocks).
    /// </summary>
    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, false)]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, true)]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, true, true)]
    public void Lora_over_stored_blocks_trains_as_over_the_dequantized_weights(LLamaFtype type, bool checkpointing, bool variants = false)
    {
        using var tiles = QuantizedOps.UseTileDtype(ScalarType.Float32);       // the exact product; bf16 tiles below
        var (dense, stored) = DenseAndStoredSteps(type, checkpointing, variants);
        Assert.Equal(dense.Loss, stored.Loss, 4);
        Assert.Equal(dense.Gradients.Keys.Order(), stored.Gradients.Keys.Order());
        foreach (var (name, expected) in dense.Gradients)
            Tolerances.AssertClose(expected, stored.Gradients[name], 1e-4, name);
    }

    /// <summary>
    /// With bf16 tiles (the default where the CPU multiplies bf16 natively) each stored product rounds its input, the
    /// dequantized weight and its result to bf16 (2⁻⁸ of a value each): the loss moves by about that fraction, and each
    /// adapter gradient, through two layers of such products forward and back, stays within a few of those steps.
    /// </summary>
    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, true)]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, false)]
    public void Lora_over_stored_blocks_with_bf16_tiles_trains_as_over_the_dequantized_weights_within_bf16s_rounding(LLamaFtype type, bool checkpointing)
    {
        using var tiles = QuantizedOps.UseTileDtype(ScalarType.BFloat16);      // the dense model has no tiles: fp32 throughout
        var (dense, stored) = DenseAndStoredSteps(type, checkpointing, variants: false);
        Assert.True(Math.Abs(stored.Loss / dense.Loss - 1) < 1.0 / 256, $"loss {stored.Loss} against fp32's {dense.Loss}");
        foreach (var (name, expected) in dense.Gradients)
        {
            double error = Math.Sqrt(expected.Zip(stored.Gradients[name], (e, a) => (double)(e - a) * (e - a)).Sum());
            double norm = Math.Sqrt(expected.Sum(e => (double)e * e));
            Assert.True(error <= norm / 32, $"{name}: gradient off by {error / norm:P2} of its norm (allowed 1/32)");
        }
    }

    static ((float Loss, Dictionary<string, float[]> Gradients) Dense, (float Loss, Dictionary<string, float[]> Gradients) Stored)
        DenseAndStoredSteps(LLamaFtype type, bool checkpointing, bool variants)
    {
        using var temp = new TestModels.TempFolder();
        string path = Quantized(temp, type);
        var lora = PeftRegistry.Get("lora");
        // The variants: DoRA's row norms tile by tile from the blocks, a PiSSA start from the blocks dequantized once.
        var settings = new PeftSettings { LoraR = 3, LoraAlpha = 5, LoraTargets = [LinearTargets.AllLinear], LoraDora = variants, LoraInit = variants ? "pissa" : "kaiming" };
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
        return (dense, Step(WeightStorage.AsStored));
    }

    /// <summary>
    /// A prompt (many rows: dequantized tiles and GEMM) then tokens one at a time with the cache (one row: the block
    /// kernels), each position's logits against llama.cpp's for the same sequence. Both paths round activations to 8 bits
    /// as ggml does, so most positions agree with llama.cpp to float precision. Not all can: an activation within an ulp
    /// of a rounding boundary (a few per thousand rounded values) may round the other way after a last-bit difference in
    /// a norm or a sum, moving that row by one quantum; the test allows a few positions such a step away.
    /// </summary>
    /// <param name="equal">What counts as equal at a position: float precision for 8-bit activations; for F16 weights, whose
    /// activations ggml rounds to fp16, the fp16 rounding of the sums' terms (half an fp16 ulp is 4.9e-4 of a value).</param>
    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, 1e-4)]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, 1e-4)]
    [InlineData(LLamaFtype.MOSTLY_F16, 2e-3)]
    public void Cached_decoding_on_the_block_kernels_gives_llama_cpps_logits(LLamaFtype type, double equal)
    {
        // The prompt's products in fp32 (exactly the dequantized weight's); bf16 tiles are held to perplexity above.
        using var tiles = QuantizedOps.UseTileDtype(ScalarType.Float32);
        using var temp = new TestModels.TempFolder();
        string path = Quantized(temp, type);
        using var ours = LanguageModel.Load(path, WeightStorage.AsStored);
        var tokens = Tokens(24, seed: 5);
        float[][] expected;
        using (var reference = new LlamaCpp(path)) expected = reference.Logits(tokens);
        const int prompt = 16;
        var differences = new List<double>(); // max |difference| / max |expected|, per position
        void Compare(int t, Tensor logits)
        {
            var actual = logits.data<float>().ToArray();
            double scale = expected[t].Max(v => Math.Abs(v));
            differences.Add(expected[t].Zip(actual, (e, a) => Math.Abs(e - a)).Max() / scale);
        }
        using var noGrad = no_grad();
        var cache = ours.Model.NewCache();
        using (var ids = tensor(tokens.Take(prompt).Select(t => (long)t).ToArray(), [1, prompt]))
        using (var logits = ours.Model.Forward(ids, cache: cache))
            for (int t = 0; t < prompt; t++) Compare(t, logits[0, t]);
        for (int t = prompt; t < tokens.Length; t++)
        {
            using var id = tensor(new long[] { tokens[t] }, [1, 1]);
            using var positions = tensor(new long[] { t }, [1, 1]);
            using var logits = ours.Model.Forward(id, positionIds: positions, cache: cache);
            Compare(t, logits[0, 0]);
        }
        string all = string.Join(", ", differences.Select((d, t) => $"{t}: {d:E1}"));
        int exact = differences.Count(d => d < equal), decoded = differences.Skip(prompt).Count(d => d < equal);
        Assert.True(exact >= differences.Count * 3 / 4 && decoded >= (tokens.Length - prompt) / 2, $"{type}: too few positions equal llama.cpp's: {all}");
        Assert.True(differences.Max() < 0.05, $"{type}: a position further from llama.cpp's than a rounding step: {all}");
    }

    /// <summary>
    /// Decoding over stored blocks: after the prompt, libtorch's own operations run on one thread (its OpenMP threads
    /// spinning between a step's small operations took the cores from the block kernels), and the count is given back.
    /// </summary>
    [Fact]
    public void Decoding_over_stored_blocks_runs_libtorchs_operations_on_one_thread_and_gives_the_count_back()
    {
        using var temp = new TestModels.TempFolder();
        using var lm = LanguageModel.Load(Quantized(temp, LLamaFtype.MOSTLY_Q8_0), WeightStorage.AsStored);
        int before = get_num_threads();
        set_num_threads(2);
        try
        {
            List<int> Threads(int promptTokens, bool stepDecoder)
            {
                var during = new List<int>();
                var generator = new TextGenerator(lm.Model, new GenerationOptions { Greedy = true, MaxNewTokens = 4 })
                    { OnToken = (_, _) => during.Add(get_num_threads()), UseStepDecoder = stepDecoder };
                generator.Generate([Tokens(promptTokens)]);
                Assert.Equal(2, get_num_threads());
                return during;
            }
            // A long prompt through the modules on libtorch's threads, the steps after it on one; a short prompt on the
            // step decoder, libtorch on one thread from the start; without the step decoder, the modules' steps on one.
            Assert.Equal([2, 1, 1, 1], Threads(40, stepDecoder: true));
            Assert.Equal([1, 1, 1, 1], Threads(8, stepDecoder: true));
            Assert.Equal([2, 1, 1, 1], Threads(8, stepDecoder: false));
        }
        finally
        {
            set_num_threads(before);
        }
    }

    /// <summary>
    /// From the command line: every adapter and prompt method trains over a Q4_K_M file kept in its blocks (the default
    /// for a GGUF base), with gradient checkpointing, and its run folder scores; methods that train base weights are
    /// refused over a stored base and dequantize it by default, saying so.
    /// </summary>
    [Theory]
    [InlineData("lora")]
    [InlineData("ia3")]
    [InlineData("prompt")]
    [InlineData("ptuning")]
    [InlineData("prefix")]
    [InlineData("ptuning-v2")]
    [InlineData("lora-variants")]
    public void Every_adapter_and_prompt_method_trains_over_a_q4_k_m_base_kept_in_its_blocks(string method)
    {
        using var temp = new TestModels.TempFolder();
        string path = Quantized(temp, LLamaFtype.MOSTLY_Q4_K_M), run = temp.File("run"), data = CausalLmCliTests.Data(temp);
        string[] methodArgs = method == "lora-variants"
            ? ["--method", "lora", "--lora-dora", "--lora-init", "olora", "--lora-rslora", "--loraplus-lr-ratio", "8"] : ["--method", method];
        var (code, output, error) = CliHarness.Run(["train", "--model", path, "--task", "causal-lm", "--train", data, .. methodArgs,
            "--virtual-tokens", "3", "--gradient-checkpointing", "--max-steps", "2", "--batch-size", "4", "--out", run, "--max-length", "40"]);
        Assert.True(code == 0, error + output);
        Assert.Contains("base held as stored", output);
        if (method == "lora-variants") Assert.Contains("--lora-init olora: the start B0 A0 is subtracted in the update, not from the weight (as PEFT does), so the base stays in its stored blocks and no residual is re-quantized", output);
        var scored = CliHarness.Run("eval", "--model", run, "--data", data);
        Assert.True(scored.Code == 0, scored.Error);
        Assert.Contains("perplexity", scored.Out);
    }

    /// <summary>
    /// <c>--precision bf16</c> over a stored base computes in bf16 as over a bf16 base: the frozen dense parameters and the
    /// embedding's rows bf16, what trains fp32 (the run says so); the default (fp32) leaves activations fp32. The adapter
    /// trains and scores either way, on either tile dtype (forced here, so both hold on any CPU).
    /// </summary>
    [Theory]
    [InlineData("lora", true, ScalarType.BFloat16)]
    [InlineData("prefix", true, ScalarType.BFloat16)]
    [InlineData("prompt", true, ScalarType.Float32)]
    [InlineData("lora", false, ScalarType.BFloat16)]
    public void Training_over_a_stored_base_computes_in_bf16_under_precision_bf16(string method, bool bf16, ScalarType tileDtype)
    {
        using var tiles = QuantizedOps.UseTileDtype(tileDtype);
        using var temp = new TestModels.TempFolder();
        string path = Quantized(temp, LLamaFtype.MOSTLY_Q4_K_M, "qwen2"), run = temp.File("run"), data = CausalLmCliTests.Data(temp);
        var (code, output, error) = CliHarness.Run(["train", "--model", path, "--task", "causal-lm", "--train", data, "--method", method,
            "--virtual-tokens", "3", "--gradient-checkpointing", "--max-steps", "2", "--batch-size", "4", "--out", run, "--max-length", "40",
            "--precision", bf16 ? "bf16" : "fp32"]);
        Assert.True(code == 0, error + output);
        Assert.Equal(bf16, output.Contains("stored base computed in bf16"));
        var scored = CliHarness.Run("eval", "--model", run, "--data", data);
        Assert.True(scored.Code == 0, scored.Error);
        Assert.Matches(@"perplexity\s+[0-9]", scored.Out);
        if (!bf16) return;

        // The model as the run builds it: bf16 activations over bf16 frozen parameters, fp32 where it trains.
        var lora = PeftRegistry.Get("lora");
        var settings = new PeftSettings { LoraR = 2, LoraAlpha = 4, LoraTargets = [LinearTargets.AllLinear] };
        var shape = (IBackboneShape)LanguageModel.ReadConfig(path);
        using var lm = LanguageModel.Load(path, WeightStorage.AsStored, linears: lora.Linears(settings, shape, DecoderLinears.Plain));
        using var model = new CausalLmModel(lm.Model, null);
        lora.Freeze(model, settings);
        QuantizedOps.ComputeInBf16(model);
        var dtype = ScalarType.BFloat16;
        Assert.All(model.parameters().Where(p => p.requires_grad), p => Assert.Equal(ScalarType.Float32, p.dtype));
        Assert.All(model.parameters().Where(p => !p.requires_grad), p => Assert.Equal(dtype, p.dtype));
        using var ids = tensor(Tokens(20, seed: 4).Select(t => (long)t).ToArray(), [2, 10]);
        using var hidden = ((ILanguageModelHead)lm.Model).ForwardHidden(lm.Model.EmbedTokens(ids));
        Assert.Equal(dtype, hidden.dtype);
        model.train();
        using var loss = model.Loss(ids, ones_like(ids), ids);
        loss.backward();
        Assert.True(float.IsFinite(loss.item<float>()));
        // B starts at zero, so only the B matrices get a gradient on the first step (A's is B-weighted).
        var trained = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        Assert.All(trained, p => Assert.NotNull(p.parameter.grad));
        Assert.Contains(trained, p => p.name.Contains("lora_B"));
        Assert.All(trained.Where(p => p.name.Contains("lora_B")), p => Assert.True(p.parameter.grad!.abs().sum().item<float>() > 0, p.name));
    }

    [Fact]
    public void Precision_bf16_over_an_fp32_base_is_refused_naming_the_flags()
    {
        using var temp = new TestModels.TempFolder();
        string path = Quantized(temp, LLamaFtype.MOSTLY_Q8_0), data = CausalLmCliTests.Data(temp);
        var (code, output, error) = CliHarness.Run(["train", "--model", path, "--task", "causal-lm", "--train", data, "--method", "lora",
            "--base-dtype", "fp32", "--precision", "bf16", "--max-steps", "1", "--out", temp.File("run")]);
        Assert.NotEqual(0, code);
        Assert.Contains("--precision bf16", error + output);
        Assert.Contains("--base-dtype stored", error + output);
        Assert.DoesNotContain("   at ", error + output);
    }

    /// <summary>
    /// Preference tuning over a Q4_K_M file kept in its blocks, with gradient checkpointing: the reference is the same
    /// quantized base with the adapter switched off, so the run holds one copy of the base.
    /// </summary>
    [Theory]
    [InlineData("lora", "dpo")]
    [InlineData("ptuning-v2", "dpo")]
    [InlineData("ia3", "orpo")]
    public void Preference_tuning_trains_over_a_q4_k_m_base_kept_in_its_blocks(string method, string objective)
    {
        using var temp = new TestModels.TempFolder();
        string path = Quantized(temp, LLamaFtype.MOSTLY_Q4_K_M), run = temp.File("run"), pairs = temp.File("pairs.jsonl");
        File.WriteAllLines(pairs, Enumerable.Range(0, 12).Select(i =>
            $$"""{"prompt": "count {{i}}:", "chosen": " {{i + 1}} {{i + 2}}", "rejected": " {{i + 7}}"}"""));
        var (code, output, error) = CliHarness.Run("train", "--model", path, "--task", "preference", "--objective", objective, "--train", pairs,
            "--method", method, "--virtual-tokens", "3", "--gradient-checkpointing", "--max-steps", "2", "--batch-size", "4", "--out", run, "--max-length", "40");
        Assert.True(code == 0, error + output);
        Assert.Contains("base held as stored", output);
        if (objective == "dpo") Assert.Contains("reference: the base with the adapter switched off", output);
        Assert.Contains("reward accuracy", output);
        Assert.False(File.Exists(Path.Combine(run, "reference_logps.json")));
    }

    [Fact]
    public void Methods_that_train_base_weights_are_refused_over_stored_blocks_and_dequantize_by_default()
    {
        using var temp = new TestModels.TempFolder();
        string path = Quantized(temp, LLamaFtype.MOSTLY_Q8_0), data = CausalLmCliTests.Data(temp);
        foreach (string method in new[] { "full", "bitfit" })
        {
            var refused = CliHarness.Run("train", "--model", path, "--task", "causal-lm", "--train", data, "--method", method,
                "--base-dtype", "stored", "--out", temp.File($"refused-{method}"));
            Assert.NotEqual(0, refused.Code);
            Assert.Contains("--base-dtype stored needs an adapter or prompt method", refused.Error);
            Assert.DoesNotContain("   at ", refused.Error);
        }
        var (code, output, error) = CliHarness.Run("train", "--model", path, "--task", "causal-lm", "--train", data, "--method", "full",
            "--max-steps", "1", "--batch-size", "4", "--out", temp.File("full"), "--max-length", "40");
        Assert.True(code == 0, error + output);
        Assert.Contains("base dequantized to fp32", output);
    }

    /// <summary>
    /// DoRA from a PiSSA start trained over a Q4_K_M base kept in its blocks: llama.cpp has no DoRA adapter, so the adapter
    /// export is refused with the way out; the merged GGUF (in the base's types) scores in llama.cpp as in SharpTune.
    /// </summary>
    [Fact]
    public void A_dora_run_over_a_stored_base_exports_merged_and_llama_cpp_scores_it()
    {
        using var temp = new TestModels.TempFolder();
        string path = Quantized(temp, LLamaFtype.MOSTLY_Q4_K_M), run = temp.File("run"), data = CausalLmCliTests.Data(temp);
        var (code, output, error) = CliHarness.Run("train", "--model", path, "--task", "causal-lm", "--train", data, "--method", "lora", "--lora-dora",
            "--lora-init", "pissa", "--lora-targets", "all-linear", "--max-steps", "4", "--batch-size", "4", "--lr", "2e-2", "--out", run, "--max-length", "40");
        Assert.True(code == 0, error + output);
        var refused = CliHarness.Run("export", "--model", run, "--format", "gguf-lora", "--out", temp.File("adapter.gguf"));
        Assert.NotEqual(0, refused.Code);
        Assert.Contains("DoRA", refused.Error);
        Assert.Contains("--format gguf", refused.Error);
        Assert.DoesNotContain("   at ", refused.Error);

        string gguf = temp.File("merged.gguf");
        var exported = CliHarness.Run("export", "--model", run, "--format", "gguf", "--out", gguf);
        Assert.True(exported.Code == 0, exported.Error + exported.Out);
        var tokens = Tokens(96, seed: 9);
        using var ours = LanguageModel.Load(gguf, WeightStorage.AsStored);
        double stored = PerplexityScorer.Score(ours.Model, [tokens]).Perplexity, theirs = LlamaCppPerplexity(gguf, tokens);
        Assert.True(Math.Abs(stored / theirs - 1) < 0.005, $"SharpTune {stored:F4} vs llama.cpp {theirs:F4} on the merged DoRA export");
    }

    /// <summary>
    /// LoRA trained over a Q4_K_M base kept in its blocks, merged and written as GGUF in the base's own types (the default)
    /// and as Q4_0 and Q8_0: llama.cpp loads each file and scores it as SharpTune scores the same file (0.5 %). The Q8_0
    /// export stays close to the run itself (its merged weights rounded once more, to 8 bits); 4-bit ones move further on
    /// a random model this small, so for them the agreement with llama.cpp is the check.
    /// </summary>
    [Fact]
    public void Merged_exports_of_a_lora_over_a_stored_base_score_as_llama_cpp_scores_them()
    {
        using var temp = new TestModels.TempFolder();
        string path = Quantized(temp, LLamaFtype.MOSTLY_Q4_K_M), run = temp.File("run"), data = CausalLmCliTests.Data(temp);
        var (code, output, error) = CliHarness.Run("train", "--model", path, "--task", "causal-lm", "--train", data, "--method", "lora",
            "--lora-targets", "all-linear", "--max-steps", "6", "--batch-size", "4", "--lr", "2e-2", "--out", run, "--max-length", "40");
        Assert.True(code == 0, error + output);
        var tokens = Tokens(96, seed: 9);
        double runPerplexity;
        using (var trained = SharpTune.ModelFolders.LanguageModelFolder.Load(run)) runPerplexity = PerplexityScorer.Score(trained.Model, [tokens]).Perplexity;
        foreach (var (dtype, close) in new[] { ((string?)null, 1.0), ("q4_0", 1.0), ("q8_0", 0.02) })
        {
            string gguf = temp.File($"merged-{dtype ?? "stored"}.gguf");
            var exported = CliHarness.Run(["export", "--model", run, "--format", "gguf", "--out", gguf, .. dtype is null ? Array.Empty<string>() : ["--dtype", dtype]]);
            Assert.True(exported.Code == 0, exported.Error + exported.Out);
            var types = GgufFile.Open(gguf).Tensors.Where(t => t.Shape.Length == 2).Select(t => t.Type).Distinct().ToList();
            if (dtype is null) Assert.Equal(GgufFile.Open(path).Tensors.Where(t => t.Shape.Length == 2).Select(t => t.Type).Distinct().Order(), types.Order());
            using var ours = LanguageModel.Load(gguf, WeightStorage.AsStored);
            // Scored on fp32 tiles: the claim is that the two engines read the export alike. bf16 tiles' scoring is held to
            // llama.cpp by Stored_weights_score_within_half_a_percent_of_llama_cpp; on this trained export it measured 0.3 %
            // off, and 0.7 % under ATEN_CPU_CAPABILITY=avx2.
            double stored;
            using (QuantizedOps.UseTileDtype(ScalarType.Float32)) stored = PerplexityScorer.Score(ours.Model, [tokens]).Perplexity;
            double theirs = LlamaCppPerplexity(gguf, tokens);
            Assert.True(Math.Abs(stored / theirs - 1) < 0.005, $"{dtype ?? "base types"}: SharpTune {stored:F4} vs llama.cpp {theirs:F4} on the export");
            Assert.True(Math.Abs(theirs / runPerplexity - 1) < close, $"{dtype ?? "base types"}: the export scores {theirs:F4}, the run {runPerplexity:F4}");
        }
    }
}
