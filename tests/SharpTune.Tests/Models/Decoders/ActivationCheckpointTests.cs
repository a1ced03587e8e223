using SharpTune.Models;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders;

/// <summary>
/// Activation checkpointing gives the gradients of the plain backward pass: for each family, for LoRA adapters behind a
/// frozen embedding, and with dropout, whose masks the recomputation draws again from the generator state it saved.
/// </summary>
public class ActivationCheckpointTests
{
    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Checkpointed_layers_give_the_gradients_of_the_plain_backward(string family)
    {
        using var model = DecoderTraining.Create(family);
        using var ids = TinyDecoders.Ids(2, 9);
        var plain = DecoderTraining.LossAndGrads(model, () => DecoderTraining.FullLogitsLoss(model, ids));
        ((IGradientCheckpointing)model).GradientCheckpointing = true;
        var checkpointed = DecoderTraining.LossAndGrads(model, () => DecoderTraining.FullLogitsLoss(model, ids));

        // The no_grad forward may take other kernels than a forward with grad; every parameter, embeddings included
        // (the gradient has to reach each layer's input), gets its gradient.
        Tolerances.AssertClose([plain.Loss], [checkpointed.Loss], Tolerances.DifferentKernels, "loss");
        Assert.Equal(model.Module.parameters().Count(), plain.Grads.Count);
        DecoderTraining.AssertSameGrads(plain.Grads, checkpointed.Grads, Tolerances.DifferentKernels, $"{family} checkpointed");
    }

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Lora_adapters_behind_a_frozen_embedding_get_their_gradients(string family)
    {
        // No input of a checkpointed layer requires grad here (the embedding is frozen): the adapters still must learn.
        using var model = DecoderTraining.Create(family, lora: true);
        using var ids = TinyDecoders.Ids(2, 9);
        var plain = DecoderTraining.LossAndGrads(model, () => DecoderTraining.FullLogitsLoss(model, ids));
        ((IGradientCheckpointing)model).GradientCheckpointing = true;
        var checkpointed = DecoderTraining.LossAndGrads(model, () => DecoderTraining.FullLogitsLoss(model, ids));

        Assert.All(plain.Grads.Keys, name => Assert.Contains(".lora_", name));
        Assert.Equal(model.Module.parameters().Count(p => p.requires_grad), plain.Grads.Count);
        DecoderTraining.AssertSameGrads(plain.Grads, checkpointed.Grads, Tolerances.DifferentKernels, $"{family} LoRA checkpointed");
    }

    [Theory]
    [InlineData("llama", true)]
    [InlineData("qwen2", true)]
    [InlineData("gpt2", true)]
    [InlineData("gpt2", false)]
    [InlineData("llama", true, true)]
    [InlineData("gpt2", true, true)]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void With_dropout_the_recomputation_draws_the_same_masks(string family, bool lora, bool dora = false)
    {
        // Attention dropout (and LoRA's dropout, and GPT-2's residual and embedding dropout) at 0.3: the masks come from
        // libtorch's generator, whose state each checkpointed layer saves and sets again for its recomputation. Were
        // the masks drawn anew, the gradients would differ by far more than rounding.
        // DoRA (from a PiSSA start) recomputes its row norms and, with dropout, its base product on the dropped-out input.
        using var model = DecoderTraining.Create(family, dropout: 0.3, lora: lora, dora: dora);
        using var ids = TinyDecoders.Ids(2, 9);
        var plain = DecoderTraining.LossAndGrads(model, () => DecoderTraining.FullLogitsLoss(model, ids));
        var otherMasks = DecoderTraining.LossAndGrads(model, () => DecoderTraining.FullLogitsLoss(model, ids), seed: 6);
        ((IGradientCheckpointing)model).GradientCheckpointing = true;
        var checkpointed = DecoderTraining.LossAndGrads(model, () => DecoderTraining.FullLogitsLoss(model, ids));

        Assert.True(Math.Abs(plain.Loss - otherMasks.Loss) > Tolerances.Distinct * Math.Abs(plain.Loss), "dropout takes part: other seeds, other losses");
        Tolerances.AssertClose([plain.Loss], [checkpointed.Loss], Tolerances.DifferentKernels, "loss");
        DecoderTraining.AssertSameGrads(plain.Grads, checkpointed.Grads, Tolerances.DifferentKernels, $"{family} with dropout, checkpointed");
    }

    [Fact]
    public void The_recomputation_leaves_the_generator_where_the_plain_run_leaves_it()
    {
        // Restoring the generator for the recomputation must not rewind the rest of the run: what is drawn after a
        // checkpointed step equals what is drawn after a plain one.
        using var model = DecoderTraining.Create("llama", dropout: 0.3);
        using var ids = TinyDecoders.Ids(2, 9);
        float After(bool checkpointing)
        {
            ((IGradientCheckpointing)model).GradientCheckpointing = checkpointing;
            DecoderTraining.LossAndGrads(model, () => DecoderTraining.FullLogitsLoss(model, ids));
            using var draw = rand(1);
            return draw.item<float>();
        }
        Assert.Equal(After(false), After(true));
    }

    [Fact]
    public void Each_layer_runs_again_in_the_backward_pass()
    {
        int calls = 0;
        LinearFactory counting = site => new CountingLinear(site.InFeatures, site.OutFeatures, site.Bias, () => calls++);
        manual_seed(7);
        using var model = PretrainedDecoder.Create(TinyDecoders.Config("llama"), linears: counting);
        model.Module.train();
        ((IGradientCheckpointing)model).GradientCheckpointing = true;
        using var ids = TinyDecoders.Ids(2, 9);
        using var loss = DecoderTraining.FullLogitsLoss(model, ids);
        int forward = calls;
        Assert.Equal(3 * 7, forward);                                             // 3 layers x (q, k, v, o, gate, up, down)
        loss.backward();
        Assert.Equal(2 * forward, calls);
    }

    sealed class CountingLinear : nn.Module<Tensor, Tensor>
    {
        readonly TorchSharp.Modules.Linear inner;
        readonly Action counted;

        public CountingLinear(int inFeatures, int outFeatures, bool bias, Action counted) : base(nameof(CountingLinear))
        {
            inner = nn.Linear(inFeatures, outFeatures, hasBias: bias);
            this.counted = counted;
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            counted();
            return inner.forward(x);
        }
    }

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    public void Evaluation_and_generation_forwards_are_unchanged(string family)
    {
        using var model = DecoderTraining.Create(family);
        using var ids = TinyDecoders.Ids(2, 7);
        model.Module.eval();
        using var plain = model.Forward(ids);
        ((IGradientCheckpointing)model).GradientCheckpointing = true;
        Assert.True(((IGradientCheckpointing)model).GradientCheckpointing);
        using var evaluated = model.Forward(ids);
        Tolerances.AssertClose(plain, evaluated, Tolerances.Exact, "eval mode");

        // Training mode under no_grad (a validation pass) and with a cache (generation) take the plain path too.
        model.Module.train();
        using (no_grad())
        {
            using var noGrad = model.Forward(ids);
            Tolerances.AssertClose(plain, noGrad, Tolerances.Exact, "no_grad");
        }
        using var cache = model.NewCache();
        using var cached = model.Forward(ids, cache: cache);
        cached.sum().backward();                                                  // a recomputation would append to the cache again
        Assert.Equal(7, cache.Length);
    }

    [Fact]
    public void A_checkpointed_function_differentiates_its_inputs_and_parameters()
    {
        // y = sum(tanh(x W^T) * m): gradients for x and W through the recomputation; m (no grad) and a null input pass through.
        manual_seed(3);
        using var w = randn(5, 4).requires_grad_();
        using var x0 = randn(3, 4).requires_grad_();
        using var m = randn(3, 5);
        int calls = 0;
        Tensor F(Tensor x, Tensor mask)
        {
            calls++;
            return (nn.functional.linear(x, w).tanh() * mask).sum();
        }

        using var expected = F(x0, m);
        expected.backward();
        using var wGrad = w.grad!.clone();
        using var xGrad = x0.grad!.clone();
        w.grad = null;
        x0.grad = null;

        calls = 0;
        using var actual = ActivationCheckpoint.Run(t => F(t[0]!, t[1]!), [x0, m, null], [w]);
        Assert.True(actual.requires_grad);
        Assert.Equal(1, calls);
        actual.backward();
        Assert.Equal(2, calls);
        Tolerances.AssertClose(expected, actual, Tolerances.Exact, "value");
        Tolerances.AssertClose(wGrad, w.grad!, Tolerances.Rounding, "dW");
        Tolerances.AssertClose(xGrad, x0.grad!, Tolerances.Rounding, "dx");
    }
}
