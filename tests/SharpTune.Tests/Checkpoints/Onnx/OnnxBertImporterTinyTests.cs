using SharpTune.Models.Bert.Onnx;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SharpTune.Checkpoints.Onnx;

namespace SharpTune.Tests.Checkpoints.Onnx;

/// <summary>The importer against small hand-built exports whose true HF weights are known exactly.</summary>
public class OnnxBertImporterTinyTests
{
    static void Dispose(ImportedModel model)
    {
        foreach (var t in model.StateDict.Values) t.Dispose();
    }

    public static TheoryData<string, bool, int?> Variants => new()
    {
        { "", false, 1 },         // as minilm: decomposed layer norm, Gemm pooler with transB = 1
        { "bert.", true, 0 },     // prefixed names, LayerNormalization op, Gemm that takes (in, out)
        { "", true, null },       // as arctic-xs: no pooler
        { "model.bert.", false, null },
    };

    [Theory, MemberData(nameof(Variants))]
    public void Every_weight_comes_back_exactly_in_hf_layout(string prefix, bool layerNormOp, int? poolerTransB)
    {
        var tiny = new TinyBertOnnx { Prefix = prefix, LayerNormOp = layerNormOp, PoolerTransB = poolerTransB, Eps = layerNormOp ? 1e-5f : 1e-12f };
        var model = OnnxBertImporter.Load(tiny.Build(), "tiny.onnx");
        try
        {
            var c = model.Config;
            Assert.Equal((TinyBertOnnx.Vocab, TinyBertOnnx.Hidden, TinyBertOnnx.Layers, TinyBertOnnx.Heads, TinyBertOnnx.Intermediate),
                (c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize));
            Assert.Equal((TinyBertOnnx.MaxPositions, TinyBertOnnx.TypeVocab, "gelu"), (c.MaxPositionEmbeddings, c.TypeVocabSize, c.HiddenAct));
            Assert.Equal(layerNormOp ? 1e-5 : 1e-12, c.LayerNormEps);

            Assert.Equal(tiny.Weights.Keys.Order(), model.StateDict.Keys.Order());
            Assert.Equal(OnnxBertImporter.ExpectedShapes(c, poolerTransB is not null).Keys, model.StateDict.Keys);  // HF order
            foreach (var (key, (values, shape)) in tiny.Weights)
            {
                Assert.Equal(shape, model.StateDict[key].shape);
                Assert.True(values.SequenceEqual(model.StateDict[key].data<float>().ToArray()), $"{key} differs");
            }
            Assert.Equal(poolerTransB is null, model.Notes.Any(n => n.Contains("no pooler")));
        }
        finally { Dispose(model); }
    }

    [Fact]
    public void The_tiny_export_is_valid_onnx_that_onnx_runtime_runs()
    {
        // ONNX Runtime parses the file with its own protobuf code: this checks the test writer's field numbers.
        using var session = new InferenceSession(new TinyBertOnnx().Build());
        long[] ids = [5, 17, 98], types = [0, 1, 1], positions = [0, 1, 2];
        using var results = session.Run(
        [
            NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(ids, [1, 3])),
            NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(types, [1, 3])),
            NamedOnnxValue.CreateFromTensor("position_ids", new DenseTensor<long>(positions, [1, 3])),
        ]);
        Assert.Equal([1, 3, TinyBertOnnx.Hidden], results.First(r => r.Name == "last_hidden_state").AsTensor<float>().Dimensions.ToArray());
        Assert.Equal([1, TinyBertOnnx.Hidden], results.First(r => r.Name == "pooler_output").AsTensor<float>().Dimensions.ToArray());
    }

    [Fact]
    public void An_unmappable_matmul_weight_is_named_in_the_error()
    {
        var bytes = new TinyBertOnnx { StrayMatMul = true }.Build();
        var e = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Load(bytes, "stray.onnx"));
        Assert.StartsWith("stray.onnx: ", e.Message);
        Assert.Contains("could not be mapped: 'stray_weight' [32, 5]", e.Message);
    }

    [Fact]
    public void A_renamed_weight_is_both_unmapped_and_missing()
    {
        var tiny = new TinyBertOnnx { Rename = k => k == "encoder.layer.1.output.LayerNorm.weight" ? "mystery.gamma" : k };
        var e = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Load(tiny.Build(), "renamed.onnx"));
        Assert.Contains("missing keys: encoder.layer.1.output.LayerNorm.weight", e.Message);
        Assert.Contains("'mystery.gamma' [32]", e.Message);
    }

    [Fact]
    public void Heads_come_from_the_argument_when_the_graph_does_not_show_them()
    {
        var bytes = new TinyBertOnnx { HeadReshapes = false }.Build();
        var e = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Load(bytes, "noheads.onnx"));
        Assert.Contains("cannot infer num_attention_heads", e.Message);

        var model = OnnxBertImporter.Load(bytes, "noheads.onnx", numAttentionHeads: 4);
        Dispose(model);
        Assert.Equal(4, model.Config.NumAttentionHeads);
        Assert.Contains(model.Notes, n => n.Contains("as given"));
    }

    [Fact]
    public void Heads_given_against_the_graph_are_an_error()
    {
        var e = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Load(new TinyBertOnnx().Build(), "tiny.onnx", numAttentionHeads: 8));
        Assert.Contains("8 attention heads were asked for, but the graph splits 32 into 4 heads", e.Message);
    }

    [Fact]
    public void Every_truncation_is_invalid_data_naming_the_file()
    {
        var bytes = new TinyBertOnnx().Build();
        for (int length = 0; length < bytes.Length; length += 1 + length / 64)
        {
            var e = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Load(bytes[..length], "cut.onnx"));
            Assert.StartsWith("cut.onnx: ", e.Message);
        }
    }

    [Fact]
    public void Corrupted_bytes_give_invalid_data_or_an_import_never_another_exception()
    {
        var clean = new TinyBertOnnx().Build();
        var random = new Random(11);
        for (int trial = 0; trial < 300; trial++)
        {
            var bytes = (byte[])clean.Clone();
            for (int flips = random.Next(1, 4); flips > 0; flips--) bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
            try { Dispose(OnnxBertImporter.Load(bytes, "flipped.onnx")); }
            catch (InvalidDataException e) { Assert.StartsWith("flipped.onnx: ", e.Message); }
        }
    }
}
