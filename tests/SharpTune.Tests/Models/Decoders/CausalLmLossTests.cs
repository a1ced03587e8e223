using SharpTune.Models.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders;

/// <summary>The chunked head and loss equal the plain cross-entropy over full logits, value and gradients.</summary>
public class CausalLmLossTests
{
    /// <summary>transformers' ForCausalLMLoss over materialised logits: labels padded with -100 and shifted left.</summary>
    static Tensor PlainLoss(Tensor hidden, Tensor weight, Tensor? bias, Tensor labels, bool shift)
    {
        using var scope = NewDisposeScope();
        var logits = nn.functional.linear(hidden.to(weight.dtype), weight, bias).to(ScalarType.Float32);     // (B, T, V)
        var targets = shift ? cat([labels[.., 1..], full(labels.shape[0], 1, -100L, ScalarType.Int64)], 1) : labels;
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), targets.reshape(-1), ignore_index: -100).MoveToOuterDisposeScope();
    }

    [Theory]
    [InlineData(true, 5, true)]     // chunks of 5 over 2 x 11 positions less the masked ones: a short last chunk
    [InlineData(true, 1, false)]
    [InlineData(false, 7, true)]
    [InlineData(true, 1000, false)] // one chunk
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Chunked_loss_and_gradients_equal_the_full_logits_cross_entropy(bool shift, int chunk, bool withBias)
    {
        manual_seed(21);
        using var hidden0 = randn(2, 11, 16);
        using var weight = randn(97, 16).mul_(0.3).requires_grad_();
        using var bias = withBias ? randn(97).mul_(0.1).requires_grad_() : null;
        using var labels = randint(0, 97, [2, 11], dtype: ScalarType.Int64);
        labels[0, TensorIndex.Slice(0, 4)] = tensor(-100L);                           // a masked prompt
        labels[1, TensorIndex.Slice(9, null)] = tensor(-100L);                        // padding

        var (expected, expectedGrads) = LossAndGrads(h => PlainLoss(h, weight, bias, labels, shift), hidden0, weight, bias);
        var (actual, actualGrads) = LossAndGrads(h => CausalLmLoss.Compute(h, weight, bias, labels, shift, chunk), hidden0, weight, bias);

        // Sums over the vocabulary and over tokens come out in other orders.
        Tolerances.AssertClose([expected], [actual], Tolerances.DifferentKernels, "loss");
        string[] names = ["hidden", "head weight", "head bias"];
        for (int i = 0; i < expectedGrads.Length; i++)
            Tolerances.AssertClose(expectedGrads[i], actualGrads[i], Tolerances.DifferentKernels, names[i] + " gradient");
    }

    /// <summary>
    /// A head kept in blocks: the loss runs over vocabulary tiles (a running log-sum-exp, then softmax - onehot per tile),
    /// each tile dequantized once per pass. With fp32 tiles it equals the plain cross-entropy over the dequantized head,
    /// value, hidden-state and bias gradients, over many tiles (16 vocabulary rows each here) and one; with bf16 tiles
    /// the logits carry bf16's rounding (2⁻⁸ of |h|·|w| summed, see QuantizedOpsTests), which moves the loss by about that
    /// fraction of a logit's size and each gradient element by about that fraction of its scale.
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32, 256L, true)]
    [InlineData(ScalarType.Float32, 32L << 20, false)]
    [InlineData(ScalarType.BFloat16, 256L, true)]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void A_stored_head_gives_the_loss_and_gradients_of_its_dequantized_weight(ScalarType tiles, long tileBytes, bool withBias)
    {
        using var precision = SharpTune.Models.Quantized.QuantizedOps.UseTileDtype(tiles);
        using var size = SharpTune.Models.Quantized.QuantizedOps.UseTileBytes(tileBytes);
        manual_seed(5);
        const int vocab = 101, width = 64;
        var values = (randn(vocab, width) * 0.3f).data<float>().ToArray();
        using var blocks = SharpTune.Quantization.QuantizedMatrix.Quantize(SharpTune.Checkpoints.Gguf.GgufTensorType.Q8_0, values, vocab, width);
        using var dense = SharpTune.Models.Quantized.QuantizedOps.Dequantize(blocks);
        using var hidden0 = randn(3, 9, width);
        using var bias = withBias ? randn(vocab).mul_(0.1).requires_grad_() : null;
        using var labels = randint(0, vocab, [3, 9], dtype: ScalarType.Int64);
        labels[1, TensorIndex.Slice(0, 3)] = tensor(-100L);
        labels[0, 0] = tensor((long)vocab - 1);                                          // targets in the first and last tiles
        labels[2, 4] = tensor(0L);

        using var frozen = dense.detach();
        var (expected, expectedGrads) = LossAndGrads(h => PlainLoss(h, frozen, bias, labels, shift: true), hidden0, frozen, bias);
        var (actual, actualGrads) = LossAndGrads(h => CausalLmLoss.Compute(h, blocks, bias, labels, roundActivations: false), hidden0, frozen, bias);
        double tolerance = tiles == ScalarType.Float32 ? Tolerances.DifferentKernels : 1.0 / 64;
        Tolerances.AssertClose([expected], [actual], tolerance, "loss");
        string[] names = ["hidden", "head bias"];
        for (int i = 0; i < expectedGrads.Length; i++)
            Tolerances.AssertClose(expectedGrads[i], actualGrads[i], tolerance, names[i] + " gradient");

        // Scoring (no gradients) takes the first pass alone and gives the same loss.
        using (no_grad())
        using (var scored = CausalLmLoss.Compute(hidden0, blocks, bias, labels, roundActivations: false))
            Tolerances.AssertClose([actual], [scored.item<float>()], 1e-6, "scored loss");
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void A_frozen_head_passes_the_scaled_gradient_to_the_hidden_states_in_their_dtype(ScalarType dtype)
    {
        // As under LoRA over a bf16 base: bf16 hidden states and head, only the hidden states take gradients; the loss is
        // scaled afterwards (a data-parallel share) and added to another, so the node's incoming gradient is not 1.
        manual_seed(23);
        using var hidden0 = randn(3, 9, 24).to(dtype);
        using var weight = randn(131, 24).mul_(0.2).to(dtype);
        using var labels = randint(0, 131, [3, 9], dtype: ScalarType.Int64);
        labels[2, TensorIndex.Slice(5, null)] = tensor(-100L);

        Tensor Scaled(Tensor loss) => loss * 0.37 + loss.pow(2) * 0.1;
        var (expected, expectedGrads) = LossAndGrads(h => Scaled(PlainLoss(h, weight, null, labels, true)), hidden0, weight, null);
        var (actual, actualGrads) = LossAndGrads(h => Scaled(CausalLmLoss.Compute(h, weight, null, labels, chunkTokens: 4)), hidden0, weight, null);
        Assert.Single(actualGrads);
        Assert.Equal(dtype, actualGrads[0].dtype);
        // bf16 products round d(logits) and the hidden states' gradient to bf16 on both sides, in other orders.
        double tolerance = dtype == ScalarType.BFloat16 ? 2e-2 : Tolerances.DifferentKernels;
        Tolerances.AssertClose([expected], [actual], tolerance, "loss");
        // Relative to the gradient's largest element (they are far below 1, where AssertClose compares absolutely).
        using var expectedGrad = expectedGrads[0].to(ScalarType.Float32);
        double largest = expectedGrad.abs().max().item<float>();
        Assert.True(largest > 1e-4, $"the hidden states' gradient is {largest} at most");
        using var expectedScaled = expectedGrad / largest;
        using var actualScaled = actualGrads[0].to(ScalarType.Float32) / largest;
        Tolerances.AssertClose(expectedScaled, actualScaled, tolerance, "hidden gradient / its largest element");
    }

    [Fact]
    public void Sum_counts_the_labelled_positions_and_no_label_gives_zero()
    {
        manual_seed(22);
        using var hidden = randn(2, 6, 8).requires_grad_();
        using var weight = randn(13, 8);
        using var labels = randint(0, 13, [2, 6], dtype: ScalarType.Int64);
        labels[0, TensorIndex.Slice(0, 3)] = tensor(-100L);
        var (sum, tokens) = CausalLmLoss.Sum(hidden, weight, null, labels, shiftLabels: true, chunkTokens: 4);
        Assert.Equal(2 * 5 - 2, tokens);                                              // 5 shifted positions per row, 2 masked in row 0
        using var mean = CausalLmLoss.Compute(hidden, weight, null, labels, chunkTokens: 4);
        Tolerances.AssertClose([sum.item<float>() / tokens], [mean.item<float>()], Tolerances.Rounding, "mean = sum / tokens");
        sum.Dispose();

        using var none = full(2, 6, -100L, ScalarType.Int64);
        using var zero = CausalLmLoss.Compute(hidden, weight, null, none);
        Assert.Equal(0f, zero.item<float>());
        zero.backward();
        Assert.Equal(0f, hidden.grad!.abs().max().item<float>());
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("gpt2")]
    [InlineData("gemma")]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Hidden_states_and_head_weight_give_the_models_loss(string family)
    {
        // ForwardHidden + HeadWeight + the chunked loss = Forward's logits + cross-entropy, gradients of every parameter
        // included (qwen2 and gpt2 tie the head to the embedding, llama does not).
        using var model = DecoderTraining.Create(family);
        using var ids = TinyDecoders.Ids(2, 9);
        var head = (ILanguageModelHead)model;
        var plain = DecoderTraining.LossAndGrads(model, () => DecoderTraining.FullLogitsLoss(model, ids));
        var chunked = DecoderTraining.LossAndGrads(model, () =>
        {
            using var hidden = head.ForwardHidden(model.EmbedTokens(ids));
            return CausalLmLoss.Compute(hidden, head.HeadWeight, head.HeadBias, ids, shiftLabels: true, chunkTokens: 5);
        });
        Tolerances.AssertClose([plain.Loss], [chunked.Loss], Tolerances.DifferentKernels, "loss");
        DecoderTraining.AssertSameGrads(plain.Grads, chunked.Grads, Tolerances.DifferentKernels, $"{family} chunked loss");
    }

    static (float Loss, Tensor[] Grads) LossAndGrads(Func<Tensor, Tensor> loss, Tensor hidden0, Tensor weight, Tensor? bias)
    {
        using var scope = NewDisposeScope();
        var hidden = hidden0.clone().requires_grad_();
        weight.grad = null;
        if (bias is not null) bias.grad = null;
        var value = loss(hidden);
        value.backward();
        var grads = new List<Tensor> { hidden.grad!.clone() };
        if (weight.requires_grad) grads.Add(weight.grad!.clone());
        if (bias is not null) grads.Add(bias.grad!.clone());
        foreach (var g in grads) g.MoveToOuterDisposeScope();
        return (value.item<float>(), grads.ToArray());
    }
}
