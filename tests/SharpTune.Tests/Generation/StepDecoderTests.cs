using LLama.Native;
using SharpTune.Generation;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Decoders.Llama;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Cli;
using SharpTune.Tests.Models.Decoders;
using SharpTune.Tests.Oracle;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation;

/// <summary>
/// The step decoder (<see cref="IStepDecoding"/>) against the module's own forward with a key/value cache: the same
/// logits step after step, for a batch of left-padded prompts from which rows leave, over float32 weights and over
/// stored blocks; and the generator's tokens with and without it.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public class StepDecoderTests
{
    public static TheoryData<string> LlamaShaped => new() { "llama", "qwen2", "gemma" };

    /// <summary>A tiny random model with its norm weights drawn away from their initial values (so the norms' weights count).</summary>
    static ICausalLanguageModel Model(string family)
    {
        var model = TinyDecoders.Create(family);
        manual_seed(5);
        using (no_grad())
            foreach (var (name, p) in model.Module.named_parameters())
                if (name.EndsWith("norm.weight", StringComparison.Ordinal)) p.add_(randn_like(p) * 0.2);
        return model;
    }

    /// <summary>
    /// Prompts of 5, 9 and 2 tokens, left-padded; seven steps fed the same random tokens through the module (cache,
    /// mask, positions as <see cref="TextGenerator"/> keeps them) and through the step decoder; after the third step
    /// the first row leaves. Returns the largest difference relative to the largest logit, over all steps.
    /// </summary>
    static double LargestDifference(ICausalLanguageModel model, int vocab)
    {
        using var noGrad = no_grad();
        int[][] prompts = [[1, 4, 7, 2, 9], [3, 8, 8, 1, 5, 6, 2, 9, 4], [6, 2]];
        int longest = prompts.Max(p => p.Length), batch = prompts.Length;
        var ids = new long[batch * longest];
        var maskValues = new long[batch * longest];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < prompts[b].Length; t++)
            {
                int at = b * longest + longest - prompts[b].Length + t;
                (ids[at], maskValues[at]) = (prompts[b][t], 1);
            }
        var mask = tensor(maskValues, [batch, longest]);
        var positions = (mask.cumsum(1) - 1).clamp_min(0);
        using var cache = model.NewCache();
        model.Forward(tensor(ids, [batch, longest]), mask, positions, cache).Dispose();
        using var stepper = StepDecoder.Start(model, cache, mask, capacity: 4);   // grows past 4 positions
        Assert.NotNull(stepper);
        Assert.Equal([5, 9, 2], Enumerable.Range(0, batch).Select(stepper.Length));

        var random = new Random(3);
        double worst = 0;
        for (int step = 0; step < 7; step++)
        {
            if (step == 3)
            {
                using var index = tensor(new long[] { 1, 2 });
                cache.Select(index);
                (mask, positions) = (mask.index_select(0, index), positions.index_select(0, index));
                stepper.Keep([1, 2]);
            }
            var tokens = Enumerable.Range(0, stepper.Rows).Select(_ => (long)random.Next(vocab)).ToArray();
            positions = positions.select(1, positions.shape[1] - 1).unsqueeze(1) + 1;
            mask = cat([mask, ones(tokens.Length, 1, ScalarType.Int64)], 1);
            using var expected = model.Forward(tensor(tokens, [tokens.Length, 1]), mask, positions, cache).select(1, 0);
            using var actual = stepper.Step(tokens);
            double scale = expected.abs().max().item<float>();
            worst = Math.Max(worst, (actual - expected).abs().max().item<float>() / scale);
        }
        return worst;
    }

    [Theory]
    [MemberData(nameof(LlamaShaped))]
    public void Steps_give_the_forward_pass_logits_over_float32_weights(string family)
    {
        using var model = Model(family);
        // float32 on both sides, summed in another order: a few units in the last place of the largest logit
        Assert.InRange(LargestDifference(model, TinyDecoders.Vocab), 0, 1e-5);
    }

    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, "llama")]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, "llama")]
    [InlineData(LLamaFtype.MOSTLY_Q4_0, "qwen2")]
    [InlineData(LLamaFtype.MOSTLY_F16, "qwen2")]
    [Trait("Category", "NumericParity")]
    public void Steps_give_the_forward_pass_logits_over_stored_blocks(LLamaFtype type, string family)
    {
        using var temp = new TestModels.TempFolder();
        using var lm = LanguageModel.Load(StoredDecoderTests.Quantized(temp, type, family), WeightStorage.AsStored);
        // Both sides round each product's activations to 8-bit blocks, and most steps agree to the bit. A value within a
        // float32 ulp of a rounding boundary (the norms sum in another order) may round one 8-bit step apart on the two
        // sides; that one step, carried through the later layers, moved the largest logit by 0.3 % in the worst step seen
        // (Q8_0). 2 % leaves room for a few such steps on a CPU with other vector widths, and far less than a wrong
        // position, head or norm, which moves logits by their own size.
        Assert.InRange(LargestDifference(lm.Model, lm.Model.Info.VocabSize), 0, 2e-2);
    }

    /// <summary>The CLI tests' file: unscaled random weights, whose attention scores reach hundreds (a softmax must not overflow).</summary>
    [Fact]
    public void Steps_give_the_forward_pass_logits_over_a_stored_float32_file()
    {
        using var temp = new TestModels.TempFolder();
        using var lm = LanguageModel.Load(SharpTune.Tests.Cli.CausalLmCliTests.TinyGguf(temp), WeightStorage.AsStored);
        Assert.InRange(LargestDifference(lm.Model, lm.Model.Info.VocabSize), 0, 1e-5);
    }

    [Theory]
    [MemberData(nameof(LlamaShaped))]
    public void A_prompt_computed_on_the_step_decoder_gives_the_forward_pass_logits(string family)
    {
        using var model = Model(family);
        using var noGrad = no_grad();
        // 9 and 17 tokens: chunks of 8 and a rest, each attending to the chunks before it and causally within itself
        int[][] prompts = [[1, 4, 7, 2, 9, 3, 3, 8, 5], [6, 2], [.. Enumerable.Range(0, 17).Select(i => (i * 7 + 3) % TinyDecoders.Vocab)]];
        using var stepper = ((IStepDecoding)model).CreateStepDecoder()!;
        using var actual = stepper.Prefill(prompts.Select(p => (IReadOnlyList<int>)p).ToList(), capacity: 4);
        using var next = tensor(new long[] { 5, 5, 5 }, [3, 1]);
        using var actualNext = stepper.Step([5L, 5L, 5L]);                          // one more token on every row
        for (int b = 0; b < prompts.Length; b++)
        {
            using var ids = tensor(prompts[b].Select(t => (long)t).ToArray(), [1, prompts[b].Length]);
            using var cache = model.NewCache();
            using var expected = model.ForwardLast(ids, cache: cache);
            using var expectedNext = model.ForwardLast(next.narrow(0, b, 1), cache: cache);
            Assert.True(allclose(actual[b], expected[0], rtol: 1e-4, atol: 1e-5), $"prompt {b}: {(actual[b] - expected[0]).abs().max().item<float>()}");
            Assert.True(allclose(actualNext[b], expectedNext[0], rtol: 1e-4, atol: 1e-5), $"prompt {b}, next: {(actualNext[b] - expectedNext[0]).abs().max().item<float>()}");
        }
    }

    [Theory]
    [InlineData(8)]      // computed on the step decoder
    [InlineData(40)]     // over its prefill limit: the forward pass computes it, its keys and values move over
    public void The_generator_decodes_on_the_step_decoder_and_gives_the_same_tokens(int longest)
    {
        using var model = Model("qwen2");
        var options = new GenerationOptions { Greedy = true, MaxNewTokens = 12 };
        List<int>[] prompts = [[1, 4, 7, 2, 9], [3, 8], [.. Enumerable.Range(0, longest).Select(i => (i * 5 + 1) % TinyDecoders.Vocab)]];
        var stepped = new TextGenerator(model, options);
        var stepResult = stepped.Generate(prompts);
        var forward = new TextGenerator(model, options) { UseStepDecoder = false };
        var forwardResult = forward.Generate(prompts);
        Assert.True(stepped.LastUsedStepDecoder);
        Assert.False(forward.LastUsedStepDecoder);
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(forwardResult[i].TokenIds, stepResult[i].TokenIds);
    }

    /// <summary>A tiny llama with LoRA on every Linear layer, its pairs drawn at random (B is not zero) and initialised.</summary>
    static ICausalLanguageModel WithLora(string init = "kaiming", bool dora = false)
    {
        var lora = PeftRegistry.Get("lora");
        var settings = new PeftSettings { LoraR = 2, LoraAlpha = 6, LoraTargets = [LinearTargets.AllLinear], LoraInit = init, LoraDora = dora };
        var config = TinyDecoders.Config("llama");
        IBackboneShape shape;
        using (var plain = TinyDecoders.Create("llama")) shape = plain.Shape;
        manual_seed(7);
        var model = PretrainedDecoder.Create(config, linears: lora.Linears(settings, shape, DecoderLinears.Plain));
        using (no_grad())
            foreach (var (name, p) in model.Module.named_parameters())
                if (name.Contains("lora_B", StringComparison.Ordinal)) p.copy_(randn_like(p) * 0.3);
        foreach (var layer in model.Module.modules().OfType<LoraLinear>()) layer.InitializeFromBase();
        model.Module.eval();
        return model;
    }

    [Theory]
    [InlineData("kaiming")]
    [InlineData("pissa")]      // a plain pair of rank 2r: the start subtracted
    public void Steps_give_the_forward_pass_logits_with_lora_layers(string init)
    {
        using var model = WithLora(init);
        Assert.InRange(LargestDifference(model, TinyDecoders.Vocab), 0, 1e-5);
    }

    /// <summary>A fine-tuned run loads as a <see cref="CausalLmModel"/>: over LoRA layers it decodes on its decoder's step decoder.</summary>
    [Fact]
    public void A_runs_model_decodes_on_its_decoders_step_decoder_unless_a_prompt_goes_in_front()
    {
        using var lora = new CausalLmModel(WithLora());
        lora.eval();
        Assert.InRange(LargestDifference(lora, TinyDecoders.Vocab), 0, 1e-5);

        var decoder = Model("llama");
        var method = PeftRegistry.Get("prompt");
        var settings = new PeftSettings { VirtualTokens = 3 };
        using var prompted = new CausalLmModel(decoder, method.CreatePromptEncoder(settings, decoder.Shape, decoder.WordEmbeddings));
        prompted.eval();
        Assert.Null(prompted.CreateStepDecoder());
        var generator = new TextGenerator(prompted, new GenerationOptions { Greedy = true, MaxNewTokens = 3 });
        Assert.Equal(3, generator.Generate([[1, 2, 3]]).Single().TokenIds.Count);
        Assert.False(generator.LastUsedStepDecoder);
        prompted.PromptEnabled = false;                                   // the base alone: its step decoder again
        using var bare = prompted.CreateStepDecoder();
        Assert.NotNull(bare);
    }

    /// <summary>
    /// The server's batcher makes a batch's step decoder inside the dispose scope of the request it admits: the tensors the
    /// decoder reads in place (float32 weights, LoRA pairs) must outlive that scope.
    /// </summary>
    [Fact]
    public void A_step_decoder_made_inside_a_dispose_scope_outlives_it()
    {
        using var model = WithLora();
        using var noGrad = no_grad();
        int[] prompt = [1, 4, 7, 2];
        StepDecoder stepper;
        using (var scope = NewDisposeScope())
        {
            stepper = ((IStepDecoding)model).CreateStepDecoder()!;
            stepper.Prefill([prompt], 8).Dispose();
        }
        using (stepper)
        {
            GC.Collect();
            using var cache = model.NewCache();
            using var ids = tensor(prompt.Select(t => (long)t).ToArray(), [1, prompt.Length]);
            model.ForwardLast(ids, cache: cache).Dispose();
            using var next = tensor(new long[] { 5 }, [1, 1]);
            using var expected = model.ForwardLast(next, cache: cache);
            using var actual = stepper.Step([5L]);
            Assert.True(allclose(actual, expected, rtol: 1e-4, atol: 1e-5), $"largest difference {(actual - expected).abs().max().item<float>()}");
        }
    }

    [Fact]
    public void A_model_with_layers_the_step_does_not_compute_decodes_on_its_forward()
    {
        using var model = WithLora(dora: true);
        var generator = new TextGenerator(model, new GenerationOptions { Greedy = true, MaxNewTokens = 3 });
        Assert.Equal(3, generator.Generate([[1, 2, 3]]).Single().TokenIds.Count);
        Assert.False(generator.LastUsedStepDecoder);
    }

    /// <summary>In the server's batcher: the prompt on libtorch's threads, the step decoder's steps with libtorch on one, the count back when idle.</summary>
    [Fact]
    public async Task Steps_on_a_step_decoder_run_libtorch_on_one_thread_and_the_count_comes_back()
    {
        using var model = TinyDecoders.Create("qwen2");
        int before = get_num_threads();
        set_num_threads(2);
        try
        {
            var during = new List<int>();
            using (var batcher = new ContinuousBatcher())
            {
                await batcher.Submit(new DecodeRequest { Model = model, Prompt = [3, 9, 4, 1, 7, 2], Options = new GenerationOptions { Greedy = true, MaxNewTokens = 4 }, OnToken = _ => during.Add(get_num_threads()) });
                Assert.Equal([2, 1, 1, 1], during);
                for (int i = 0; i < 100 && get_num_threads() != 2; i++) await Task.Delay(10);   // the loop gives the count back when it idles
                Assert.Equal(2, get_num_threads());
            }
        }
        finally
        {
            set_num_threads(before);
        }
    }

    [Fact]
    public void Training_mode_has_no_step_decoder()
    {
        using var model = (LlamaForCausalLM)Model("llama");
        using var cache = model.NewCache();
        using var ids = tensor(new long[] { 1, 2, 3 }, [1, 3]);
        using var mask = ones_like(ids);
        using (no_grad()) model.Forward(ids, mask, null, cache).Dispose();
        model.train();
        Assert.Null(model.CreateStepDecoder());
    }

    [Theory]
    [InlineData("silu")]
    [InlineData("gelu")]
    [InlineData("gelu_pytorch_tanh")]
    public void Activations_equal_torch(string name)
    {
        using var x = linspace(-9, 9, 1001, ScalarType.Float32);
        using var expected = GatedMlp.Activations[name](x);
        var values = x.data<float>().ToArray();
        StepMath.Activation(name)!(values);
        using var actual = tensor(values);
        Assert.True(allclose(actual, expected, rtol: 1e-5, atol: 1e-6), $"{name}: largest difference {(actual - expected).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(0.0, 0.0)]
    [InlineData(0.1, 0.1124629160182849)]
    [InlineData(0.5, 0.5204998778130465)]
    [InlineData(-1.0, -0.8427007929497149)]
    [InlineData(2.0, 0.9953222650189527)]
    [InlineData(3.5, 0.9999992569016276)]
    [InlineData(6.0, 0.9999999999999999785)]
    public void Erf_equals_its_tabulated_values(double x, double expected) =>
        Assert.Equal(expected, StepMath.Erf(x), 1e-14);
}
