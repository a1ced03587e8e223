using SharpTune.Models;
using SharpTune.Models.Decoders;
using SharpTune.Peft.IA3;
using SharpTune.Tests.Models.Decoders;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>A frozen base held in bf16 under adapters that train in fp32 (PEFT over a bf16 base).</summary>
public class MixedDtypeTests
{
    /// <summary>
    /// A bf16 base carries a bf16 residual stream, as transformers' <c>torch_dtype=bfloat16</c> does: every product, add and
    /// norm output rounds to 8 bits, so against fp32 the logits drift as in PretrainedDecoderTests' bf16 comparison (about
    /// 1 % relative, 3 % at the worst element through 3 layers). Relative to the values' scale.
    /// </summary>
    const double Bf16WholeNetwork = 5 * Tolerances.Bf16;

    static bool IsAdapter(string name) => name.Contains(".lora_", StringComparison.Ordinal) || name.Contains("ia3_l", StringComparison.Ordinal);

    /// <summary>The LoRA model of <see cref="DecoderTraining.Create"/> with its frozen base converted to bf16.</summary>
    static ICausalLanguageModel MixedLora(string family)
    {
        var model = DecoderTraining.Create(family, lora: true);
        int converted = MixedDtype.HoldFrozenIn(model.Module, ScalarType.BFloat16);
        Assert.Equal(model.Module.parameters().Count(p => !p.requires_grad), converted);
        return model;
    }

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Bf16_base_under_fp32_adapters_computes_what_the_fp32_model_does(string family)
    {
        using var reference = DecoderTraining.Create(family, lora: true);
        using var mixed = MixedLora(family);
        foreach (var (name, parameter) in mixed.Module.named_parameters())
            Assert.True(parameter.dtype == (IsAdapter(name) ? ScalarType.Float32 : ScalarType.BFloat16), $"{name} is {parameter.dtype}");

        using var ids = TinyDecoders.Ids(2, 9);
        reference.Module.eval();
        mixed.Module.eval();
        using var expected = reference.Forward(ids);
        using var actual = mixed.Forward(ids);
        Assert.Equal(ScalarType.Float32, actual.dtype);
        using var hidden = ((ILanguageModelHead)mixed).ForwardHidden(mixed.EmbedTokens(ids));
        Assert.Equal(ScalarType.BFloat16, hidden.dtype);
        Tolerances.AssertClose(expected, actual, Bf16WholeNetwork, "logits, bf16 base against fp32");
    }

    [Theory]
    [InlineData("llama", false)]
    [InlineData("qwen2", false)]
    [InlineData("gpt2", false)]
    [InlineData("llama", true)]
    [InlineData("gpt2", true)]
    public void Only_the_adapters_get_fp32_gradients_and_change_in_a_step(string family, bool memorySaving)
    {
        // memorySaving: checkpointed layers and the chunked loss, as the bench's LoRA step runs.
        using var model = MixedLora(family);
        ((IGradientCheckpointing)model).GradientCheckpointing = memorySaving;
        using var ids = TinyDecoders.Ids(2, 9);
        var before = model.Module.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var trainable = model.Module.parameters().Where(p => p.requires_grad).ToList();
        using var optimizer = optim.AdamW(trainable, lr: 1e-2);

        using (var scope = NewDisposeScope())
        {
            var head = (ILanguageModelHead)model;
            var loss = memorySaving
                ? CausalLmLoss.Compute(head.ForwardHidden(model.EmbedTokens(ids)), head.HeadWeight, head.HeadBias, ids, chunkTokens: 4)
                : DecoderTraining.FullLogitsLoss(model, ids);
            Assert.Equal(ScalarType.Float32, loss.dtype);
            loss.backward();
        }
        foreach (var (name, parameter) in model.Module.named_parameters())
        {
            if (IsAdapter(name))
            {
                Assert.True(parameter.grad is { } g && g.dtype == ScalarType.Float32, $"{name}: expected an fp32 gradient");
                Assert.True(parameter.grad!.abs().max().item<float>() > 0, $"{name}: the gradient is zero");
            }
            else Assert.True(parameter.grad is null, $"{name} is frozen but got a gradient");
        }
        optimizer.step();

        foreach (var (name, parameter) in model.Module.named_parameters())
        {
            if (IsAdapter(name)) Tolerances.AssertDistinct(before[name], parameter, $"{name} after a step");
            else Tolerances.AssertClose(before[name], parameter, Tolerances.Exact, $"{name} (frozen) after a step");
        }
        foreach (var t in before.Values) t.Dispose();
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Checkpointing_and_the_chunked_loss_keep_the_mixed_gradients(string family)
    {
        using var model = MixedLora(family);
        using var ids = TinyDecoders.Ids(2, 9);
        var head = (ILanguageModelHead)model;
        var plain = DecoderTraining.LossAndGrads(model, () => DecoderTraining.FullLogitsLoss(model, ids));
        ((IGradientCheckpointing)model).GradientCheckpointing = true;
        var saving = DecoderTraining.LossAndGrads(model, () =>
        {
            using var hidden = head.ForwardHidden(model.EmbedTokens(ids));
            return CausalLmLoss.Compute(hidden, head.HeadWeight, head.HeadBias, ids, chunkTokens: 5);
        });
        // bf16 products whose inputs may round differently once (a no_grad kernel against a grad one).
        Tolerances.AssertClose([plain.Loss], [saving.Loss], Tolerances.Bf16, "loss");
        DecoderTraining.AssertSameGrads(plain.Grads, saving.Grads, Tolerances.Bf16, $"{family} mixed, checkpointed, chunked loss");
    }

    [Fact]
    public void A_model_built_in_bf16_gets_its_adapters_back_in_fp32()
    {
        // The loading path that never holds an fp32 base beside the file: everything bf16, then the adapters fp32.
        manual_seed(7);
        using var model = PretrainedDecoder.Create(DecoderTraining.Config("llama", 0), ScalarType.BFloat16, DecoderTraining.Lora());
        foreach (var (name, parameter) in model.Module.named_parameters()) parameter.requires_grad = IsAdapter(name);
        int adapters = model.Module.named_parameters().Count(p => IsAdapter(p.name));
        Assert.Equal(adapters, MixedDtype.Convert(model.Module, ScalarType.Float32, (key, _) => IsAdapter(key)));
        foreach (var (name, parameter) in model.Module.named_parameters())
        {
            Assert.Equal(IsAdapter(name) ? ScalarType.Float32 : ScalarType.BFloat16, parameter.dtype);
            Assert.Equal(IsAdapter(name), parameter.requires_grad);
        }
        model.Module.train();
        using var ids = TinyDecoders.Ids(2, 5);
        var (_, grads) = DecoderTraining.LossAndGrads(model, () => DecoderTraining.FullLogitsLoss(model, ids));
        Assert.Equal(adapters, grads.Count);
        Assert.All(grads.Values, g => Assert.Equal(ScalarType.Float32, g.dtype));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Ia3_over_a_bf16_base_scales_in_fp32(bool feedForward)
    {
        manual_seed(4);
        using var reference = new Ia3Linear(12, 7, feedForward);
        using (no_grad())
            foreach (var (name, p) in reference.named_parameters())
                if (name == "ia3_l") p.uniform_(0.5, 1.5);
        using var mixed = new Ia3Linear(12, 7, feedForward);
        mixed.load_state_dict(reference.state_dict());
        foreach (var (name, p) in mixed.named_parameters()) p.requires_grad = name == "ia3_l";
        Assert.Equal(2, MixedDtype.HoldFrozenIn(mixed, ScalarType.BFloat16));

        using var x = randn(3, 5, 12);
        using var expected = reference.forward(x);
        using var input = x.to(ScalarType.BFloat16);
        using var actual = mixed.forward(input);
        Assert.Equal(ScalarType.BFloat16, actual.dtype);
        Tolerances.AssertClose(expected, actual, Tolerances.Bf16, "IA3 output");
        actual.to(ScalarType.Float32).sum().backward();
        var scale = mixed.named_parameters().Single(p => p.name == "ia3_l").parameter;
        Assert.Equal(ScalarType.Float32, scale.grad!.dtype);
        Assert.True(mixed.named_parameters().Where(p => p.name != "ia3_l").All(p => p.parameter.grad is null));
    }

    [Fact]
    public void A_shared_parameter_stays_shared_and_fields_follow()
    {
        using var module = new Tied();
        Assert.Equal(2, MixedDtype.HoldFrozenIn(module, ScalarType.BFloat16, (_, _) => false)); // the shared weight once, and own
        Assert.Equal(ScalarType.BFloat16, module.First.weight!.dtype);
        Assert.Same(module.First.weight, module.Second.weight);
        Assert.Same(module.Own, module.named_parameters().Single(p => p.name == "own").parameter);
        Assert.Equal(ScalarType.BFloat16, module.Own.dtype);
        Assert.Equal(ScalarType.Int64, module.Counts.dtype);                         // not floating point: left alone
    }

    sealed class Tied : nn.Module
    {
        readonly Linear first = nn.Linear(4, 4, hasBias: false);
        readonly Linear second = nn.Linear(4, 4, hasBias: false);
        readonly Parameter own = new(ones(3));
        readonly Parameter counts = new(zeros(2, dtype: ScalarType.Int64), requires_grad: false);

        public Tied() : base(nameof(Tied))
        {
            second.weight = first.weight!;
            RegisterComponents();
        }

        public Linear First => first;
        public Linear Second => second;
        public Parameter Own => own;
        public Parameter Counts => counts;
    }
}
