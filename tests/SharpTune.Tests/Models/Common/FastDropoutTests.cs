using SharpTune.Models.Common;
using SharpTune.Models.Bert;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Common;

public class FastDropoutTests
{
    [Fact]
    public void Drops_the_asked_fraction_and_keeps_the_expected_value()
    {
        manual_seed(1);
        using var x = ones(3, 1_234_567); // several blocks, the last one partial
        using var y = FastDropout.Apply(x, 0.1, training: true);
        double dropped = y.eq(0).to(ScalarType.Float64).mean().item<double>();
        Assert.InRange(dropped, 0.099, 0.101);
        float scale = (float)(65536.0 / (65536 - 6554));
        Assert.True(y.eq(0).logical_or(y.eq(scale)).all().item<bool>(), "kept elements are scaled by exactly 1 / (1 - p)");
        Assert.InRange(y.to(ScalarType.Float64).mean().item<double>(), 0.998, 1.002);
        // Every block draws its own stream: no two blocks repeat the same pattern.
        var flat = y.flatten();
        Assert.False(flat[..(1 << 20)].equal(flat[(1 << 20)..(2 << 20)]).all().item<bool>());
    }

    [Fact]
    public void Torch_seed_fixes_the_mask_and_a_new_draw_changes_it()
    {
        using var x = randn(7, 333);
        manual_seed(42);
        using var a = FastDropout.Apply(x, 0.3, training: true);
        using var b = FastDropout.Apply(x, 0.3, training: true);
        manual_seed(42);
        using var c = FastDropout.Apply(x, 0.3, training: true);
        Assert.True(a.equal(c).all().item<bool>());
        Assert.False(a.equal(b).all().item<bool>());
    }

    [Fact]
    public void Identity_when_not_training_or_p_is_zero()
    {
        using var x = randn(5, 9);
        Assert.Same(x, FastDropout.Apply(x, 0.5, training: false));
        Assert.Same(x, FastDropout.Apply(x, 0.0, training: true));
        Assert.Throws<ArgumentOutOfRangeException>(() => FastDropout.Apply(x, 1.5, training: true));
    }

    [Fact]
    public void Gradient_is_the_scaled_mask()
    {
        manual_seed(3);
        using var x = randn(11, 13).requires_grad_(true);
        var y = FastDropout.Apply(x, 0.25, training: true);
        y.sum().backward();
        using var expected = y.detach() / x.detach();
        Tolerances.AssertClose(expected, x.grad!, Tolerances.Rounding, "gradient"); // y / x rounds twice
    }

    [Fact]
    public void Bf16_input_gives_fp32_output()
    {
        manual_seed(4);
        using var x = randn(4, 6).to(ScalarType.BFloat16);
        using var y = FastDropout.Apply(x, 0.2, training: true);
        Assert.Equal(ScalarType.Float32, y.dtype);
    }

    /// <summary>
    /// With a drop probability too small to drop anything (0 of 65536), training mode runs the unfused attention
    /// with dropout and must equal the fused kernel that evaluation uses, padding mask included.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Attention_with_dropout_path_equals_the_fused_kernel(bool bf16)
    {
        var config = TestModels.TinyConfig with { HiddenDropoutProb = 0, AttentionProbsDropoutProb = 1e-9, Bf16 = bf16 };
        manual_seed(9);
        using var model = new BertModel(config, linears: bf16 ? LinearFactories.Bf16 : null);
        using var ids = randint(1, 99, [3, 10], dtype: ScalarType.Int64);
        using var mask = ones(3, 10, ScalarType.Int64);
        mask[2, 4..] = zeros(6, ScalarType.Int64);
        model.train();
        using var trained = model.forward(ids, mask).LastHiddenState.detach();
        model.eval();
        using var evaluated = model.forward(ids, mask).LastHiddenState;
        // Unfused matmul-softmax-matmul against the fused kernel, through both layers; bf16 products keep 8 bits.
        Tolerances.AssertClose(evaluated, trained, bf16 ? Tolerances.Bf16 : Tolerances.DifferentKernelsThroughNetwork, "train-mode attention against the fused kernel");
    }
}
