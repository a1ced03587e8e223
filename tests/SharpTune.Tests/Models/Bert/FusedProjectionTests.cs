using SharpTune.Models.Bert;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Bert;

/// <summary>
/// Plain query/key/value Linear layers run as one fused product; any other module (a method's wrapper) runs
/// on its own. Both paths must give the same outputs and the same gradients for every weight.
/// </summary>
public class FusedProjectionTests : IDisposable
{
    readonly int minTokens = BertSelfAttention.MinTokensToFuse;

    /// <summary>The tiny batches here are below the fusing threshold; fuse them anyway (tests run one at a time).</summary>
    public FusedProjectionTests() => BertSelfAttention.MinTokensToFuse = 0;

    public void Dispose() => BertSelfAttention.MinTokensToFuse = minTokens;

    /// <summary>A Linear that is not an nn.Linear, so the attention cannot fuse it: the unfused reference path.</summary>
    sealed class OpaqueLinear : nn.Module<Tensor, Tensor>
    {
        public OpaqueLinear(int inFeatures, int outFeatures) : base(nameof(OpaqueLinear))
        {
            var inner = nn.Linear(inFeatures, outFeatures); // nn.Linear's own initialisation
            (weight, bias) = (inner.weight!, inner.bias!);
            RegisterComponents();
        }

#pragma warning disable IDE1006 // the state-dict keys of nn.Linear
        readonly TorchSharp.Modules.Parameter weight;
        readonly TorchSharp.Modules.Parameter bias;
#pragma warning restore IDE1006

        public override Tensor forward(Tensor input) => nn.functional.linear(input, weight, bias);
    }

    [Fact]
    public void Fused_and_separate_projections_give_the_same_outputs_and_gradients()
    {
        using var fused = TestModels.TinyModel(seed: 11);
        using var separate = new BertModel(TestModels.TinyConfig, addPoolingLayer: true, linears: (_, i, o) => new OpaqueLinear(i, o));
        separate.load_state_dict(fused.state_dict());
        separate.eval();
        Assert.Equal(fused.state_dict().Keys, separate.state_dict().Keys);

        manual_seed(3);
        using var ids = randint(1, 99, [3, 9], dtype: ScalarType.Int64);
        using var mask = ones(3, 9, ScalarType.Int64);
        mask[1, 6..] = zeros(3, ScalarType.Int64); // padding, so the masked kernel runs too
        var a = fused.forward(ids, mask);
        var b = separate.forward(ids, mask);
        Assert.True(a.LastHiddenState.allclose(b.LastHiddenState, rtol: 1e-5, atol: 1e-5));

        a.LastHiddenState.pow(2).sum().backward();
        b.LastHiddenState.pow(2).sum().backward();
        var grads = separate.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!);
        foreach (var (name, parameter) in fused.named_parameters())
        {
            if (name.StartsWith("pooler.")) continue; // not on the path of the loss
            Assert.True(parameter.grad!.allclose(grads[name], rtol: 1e-4, atol: 1e-5), $"gradient of {name} differs");
        }
    }

    /// <summary>
    /// LoRA (query and value wrapped, key plain) and IA3 (key and value scaled) run the fused product and
    /// finish their own parts; a plain model that runs every projection on its own, with the adapters merged
    /// into its weights, must give the same outputs.
    /// </summary>
    [Theory]
    [InlineData("lora")]
    [InlineData("ia3")]
    public void Fused_adapter_layers_equal_separate_projections_with_merged_weights(string name)
    {
        var method = PeftRegistry.Get(name);
        var settings = new PeftSettings { LoraR = 3, LoraAlpha = 5 };
        manual_seed(5);
        using var adapted = new BertModel(TestModels.TinyConfig, linears: method.Linears(settings, TestModels.TinyConfig));
        using (no_grad())
        {
            foreach (var (key, parameter) in adapted.named_parameters())
                if (key.Contains("lora_B") || key.Contains("ia3_l")) parameter.copy_(randn(parameter.shape) * 0.3 + (key.Contains("ia3_l") ? 1 : 0));
        }
        adapted.eval();
        using var separate = new BertModel(TestModels.TinyConfig, addPoolingLayer: true, linears: (_, i, o) => new OpaqueLinear(i, o));
        separate.load_state_dict(MergedExport.PlainStateDict(adapted));
        separate.eval();

        using var ids = randint(1, 99, [2, 7], dtype: ScalarType.Int64);
        var expected = separate.forward(ids).LastHiddenState;
        var actual = adapted.forward(ids).LastHiddenState;
        double diff = (expected - actual).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"fused {name} differs from the merged separate model by {diff}");
        using var baseOnly = new BertModel(TestModels.TinyConfig, addPoolingLayer: true, linears: (_, i, o) => new OpaqueLinear(i, o));
        var baseKeys = baseOnly.state_dict().Keys.ToHashSet();
        baseOnly.load_state_dict(adapted.state_dict().Where(kv => baseKeys.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value));
        baseOnly.eval();
        Assert.True((expected - baseOnly.forward(ids).LastHiddenState).abs().max().item<float>() > 1e-3, "the adapters changed nothing");
    }
}
