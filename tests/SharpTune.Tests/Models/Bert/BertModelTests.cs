using SharpTune.Models.Bert;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Bert;

public class BertModelTests
{
    /// <summary>Every key and shape of HF's BertModel for the tiny config, in order.</summary>
    [Fact]
    public void State_dict_keys_and_shapes_equal_Hugging_Face_BertModel()
    {
        using var model = TestModels.TinyModel();
        var expected = new List<string>
        {
            "embeddings.word_embeddings.weight [99, 32]",
            "embeddings.position_embeddings.weight [64, 32]",
            "embeddings.token_type_embeddings.weight [2, 32]",
            "embeddings.LayerNorm.weight [32]",
            "embeddings.LayerNorm.bias [32]",
        };
        for (int i = 0; i < 2; i++)
        {
            string p = $"encoder.layer.{i}.";
            expected.AddRange(
            [
                p + "attention.self.query.weight [32, 32]", p + "attention.self.query.bias [32]",
                p + "attention.self.key.weight [32, 32]", p + "attention.self.key.bias [32]",
                p + "attention.self.value.weight [32, 32]", p + "attention.self.value.bias [32]",
                p + "attention.output.dense.weight [32, 32]", p + "attention.output.dense.bias [32]",
                p + "attention.output.LayerNorm.weight [32]", p + "attention.output.LayerNorm.bias [32]",
                p + "intermediate.dense.weight [37, 32]", p + "intermediate.dense.bias [37]",
                p + "output.dense.weight [32, 37]", p + "output.dense.bias [32]",
                p + "output.LayerNorm.weight [32]", p + "output.LayerNorm.bias [32]",
            ]);
        }
        expected.Add("pooler.dense.weight [32, 32]");
        expected.Add("pooler.dense.bias [32]");

        var actual = model.state_dict().Select(kv => $"{kv.Key} [{string.Join(", ", kv.Value.shape)}]").ToList();
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Outputs_have_the_documented_shapes()
    {
        using var model = TestModels.TinyModel();
        using var ids = randint(1, 99, [3, 11], dtype: ScalarType.Int64);
        using var output = model.forward(ids);
        Assert.Equal(new long[] { 3, 11, 32 }, output.LastHiddenState.shape);
        Assert.Equal(new long[] { 3, 32 }, output.PooledOutput!.shape);
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Padding_does_not_change_the_real_tokens_states()
    {
        using var model = TestModels.TinyModel();
        using var alone = tensor(new long[] { 2, 17, 45, 8, 3 }).view(1, 5);
        using var padded = tensor(new long[] { 2, 17, 45, 8, 3, 0, 0, 0, 2, 5, 6, 7, 8, 9, 10, 3 }).view(2, 8);
        using var mask = tensor(new long[] { 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 }).view(2, 8);
        using var a = model.forward(alone);
        using var b = model.forward(padded, mask);
        // One row against a padded batch: other shapes, other kernel blockings, through the network.
        Tolerances.AssertClose(a.LastHiddenState[0], b.LastHiddenState[0, ..5], Tolerances.DifferentKernelsThroughNetwork, "padded");
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Inputs_embeds_equal_token_ids()
    {
        using var model = TestModels.TinyModel();
        using var ids = randint(1, 99, [2, 7], dtype: ScalarType.Int64);
        using var fromIds = model.forward(ids);
        using var embeds = model.Embeddings.EmbedTokens(ids);
        using var fromEmbeds = model.forward(null, inputsEmbeds: embeds);
        // Token ids are looked up by the same EmbedTokens before the same layers: bit-identical.
        Tolerances.AssertClose(fromIds.LastHiddenState, fromEmbeds.LastHiddenState, Tolerances.Exact, "inputs_embeds");
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Key_value_prefix_changes_states_and_masked_prefix_attention_is_consistent()
    {
        using var model = TestModels.TinyModel();
        using var ids = randint(1, 99, [2, 6], dtype: ScalarType.Int64);
        var prefixes = Enumerable.Range(0, 2)
            .Select(_ => new KeyValuePrefix(randn(2, 4, 3, 8), randn(2, 4, 3, 8))) // (B, N, P, D)
            .ToList();
        using var plain = model.forward(ids);
        using var prefixed = model.forward(ids, prefixes: prefixes);
        Assert.Equal(new long[] { 2, 6, 32 }, prefixed.LastHiddenState.shape);
        Tolerances.AssertDistinct(plain.LastHiddenState, prefixed.LastHiddenState, "a key/value prefix");

        // The same sentence alone and padded inside a batch gives the same states with a prefix too.
        using var mask = tensor(new long[] { 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1 }).view(2, 6);
        using var batch = model.forward(ids, mask, prefixes: prefixes);
        var first = prefixes.Select(p => new KeyValuePrefix(p.Key[..1], p.Value[..1])).ToList();
        using var alone = model.forward(ids[..1, ..4], prefixes: first);
        Tolerances.AssertClose(alone.LastHiddenState, batch.LastHiddenState[..1, ..4], Tolerances.DifferentKernelsThroughNetwork, "padded with a prefix");
        foreach (var p in prefixes) { p.Key.Dispose(); p.Value.Dispose(); }
    }

    [Fact]
    public void Dropout_follows_train_and_eval_mode()
    {
        using var model = TestModels.TinyModel();
        using var ids = randint(1, 99, [2, 9], dtype: ScalarType.Int64);
        using var e1 = model.forward(ids);
        using var e2 = model.forward(ids);
        Assert.True(e1.LastHiddenState.eq(e2.LastHiddenState).all().item<bool>());
        model.train();
        using var t1 = model.forward(ids);
        using var t2 = model.forward(ids);
        Tolerances.AssertDistinct(t1.LastHiddenState, t2.LastHiddenState, "two dropout draws");
    }

    [Fact]
    public void Wrong_mask_shape_is_a_clear_error()
    {
        using var model = TestModels.TinyModel();
        using var ids = randint(1, 99, [2, 9], dtype: ScalarType.Int64);
        using var mask = ones(2, 8, ScalarType.Int64);
        var error = Assert.Throws<ArgumentException>(() => model.forward(ids, mask));
        Assert.Contains("[2, 9]", error.Message);
    }
}
