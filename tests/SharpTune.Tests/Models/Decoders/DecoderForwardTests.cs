using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders;

/// <summary>The forward contract of every family: shapes, causality, the key/value cache and left padding.</summary>
public class DecoderForwardTests
{
    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    public void The_last_positions_logits_equal_the_whole_forwards_last_row(string family)
    {
        using var model = TinyDecoders.Create(family);
        using var noGrad = no_grad();
        using var ids = TinyDecoders.Ids(2, 7);
        using var mask = tensor(new long[] { 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, [2, 7]);   // a left-padded row
        using var whole = model.Forward(ids, mask);
        using var last = model.ForwardLast(ids, mask);
        Assert.Equal([2, TinyDecoders.Vocab], last.shape);
        Assert.True(allclose(last, whole.select(1, 6), rtol: 1e-5, atol: 1e-6));
    }

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    public void Logits_are_float32_batch_by_length_by_vocabulary(string family)
    {
        using var model = TinyDecoders.Create(family);
        using var ids = TinyDecoders.Ids(2, 7);
        using var logits = model.Forward(ids);
        Assert.Equal(new long[] { 2, 7, TinyDecoders.Vocab }, logits.shape);
        Assert.Equal(ScalarType.Float32, logits.dtype);
        Assert.False(logits.isnan().any().item<bool>());
    }

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Changing_a_later_token_leaves_earlier_logits_alone(string family)
    {
        using var model = TinyDecoders.Create(family);
        using var ids = TinyDecoders.Ids(1, 9);
        using var changed = ids.clone();
        changed[0, 5] = (ids[0, 5] + 1) % TinyDecoders.Vocab;
        using var a = model.Forward(ids);
        using var b = model.Forward(changed);
        // The earlier rows see the same inputs through the same kernels, but the batch around them differs.
        Tolerances.AssertClose(a[.., ..5], b[.., ..5], Tolerances.DifferentKernels, "positions before the change");
        Tolerances.AssertDistinct(a[.., 5..], b[.., 5..], "positions from the change on");
    }

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Decoding_with_the_cache_equals_one_full_forward(string family)
    {
        using var model = TinyDecoders.Create(family);
        using var ids = TinyDecoders.Ids(2, 10);
        using var full = model.Forward(ids);

        // A 4-token prompt, a 3-token chunk (new positions attend to cached ones and causally among themselves), then single steps.
        using var cache = model.NewCache();
        var pieces = new List<Tensor>();
        foreach (var (start, length) in new[] { (0, 4), (4, 3), (7, 1), (8, 1), (9, 1) })
        {
            pieces.Add(model.Forward(ids[.., start..(start + length)], cache: cache));
            Assert.Equal(start + length, cache.Length);
        }
        using var stepped = cat(pieces, 1);
        // Other sequence lengths take other kernel blockings and attention paths, through the network.
        Tolerances.AssertClose(full, stepped, Tolerances.DifferentKernels, "cached decoding");
        foreach (var piece in pieces) piece.Dispose();
    }

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Left_padded_batch_gives_each_prompt_its_own_logits(string family)
    {
        using var model = TinyDecoders.Create(family);
        using var longer = TinyDecoders.Ids(1, 6, seed: 3);
        using var shorter = TinyDecoders.Ids(1, 3, seed: 4);
        using var padded = cat([zeros(1, 3, ScalarType.Int64), shorter], 1);
        using var batch = cat([longer, padded], 0);                                   // (2, 6)
        using var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1 }).view(2, 6);
        using var next = tensor(new long[] { 17, 41 }).view(2, 1);

        using var cache = model.NewCache();
        using var batched = model.Forward(batch, mask, cache: cache);
        using var stepMask = cat([mask, ones(2, 1, ScalarType.Int64)], 1);
        using var batchedStep = model.Forward(next, stepMask, cache: cache);

        for (int row = 0; row < 2; row++)
        {
            var prompt = row == 0 ? longer : shorter;
            using var aloneCache = model.NewCache();
            using var alone = model.Forward(prompt, cache: aloneCache);
            using var aloneStep = model.Forward(next[row..(row + 1)], cache: aloneCache);
            // One row against a padded batch: other shapes, other kernel blockings, through the network.
            Tolerances.AssertClose(alone[0, -1], batched[row, -1], Tolerances.DifferentKernelsThroughNetwork, $"row {row} last prompt position");
            Tolerances.AssertClose(aloneStep[0, -1], batchedStep[row, -1], Tolerances.DifferentKernelsThroughNetwork, $"row {row} next step");
        }
    }

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    public void A_mask_of_the_wrong_width_is_refused(string family)
    {
        using var model = TinyDecoders.Create(family);
        using var ids = TinyDecoders.Ids(2, 5);
        using var mask = ones(2, 4, ScalarType.Int64);
        var error = Assert.Throws<ArgumentException>(() => model.Forward(ids, mask));
        Assert.Contains("[2, 5]", error.Message);
    }

    [Fact]
    public void Gpt2_positions_beyond_n_positions_are_refused()
    {
        using var model = TinyDecoders.Create("gpt2");
        using var ids = TinyDecoders.Ids(1, 41);
        var error = Assert.Throws<ArgumentException>(() => model.Forward(ids));
        Assert.Contains("n_positions 40", error.Message);
    }

    [Theory]
    [MemberData(nameof(TinyDecoders.Families), MemberType = typeof(TinyDecoders))]
    public void Every_parameter_gets_a_gradient_from_the_language_modelling_loss(string family)
    {
        using var model = TinyDecoders.Create(family);
        model.Module.train();
        using var ids = TinyDecoders.Ids(2, 8);
        using var mask = tensor(new long[] { 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }).view(2, 8);
        using var logits = model.Forward(ids, mask);
        using var loss = nn.functional.cross_entropy(logits[.., ..^1].reshape(-1, TinyDecoders.Vocab), ids[.., 1..].reshape(-1));
        loss.backward();
        foreach (var (name, parameter) in model.Module.named_parameters())
        {
            Assert.True(parameter.grad is { } grad && grad.abs().sum().item<float>() > 0, $"{name} has no gradient");
            Assert.False(parameter.grad!.isnan().any().item<bool>(), $"{name} has a NaN gradient (left padding)");
        }
    }
}
