using SharpTune.Models.Bert.Onnx;
using SharpTune.Checkpoints.Onnx;
using SharpTune.Models;

namespace SharpTune.Tests.Checkpoints.Onnx;

/// <summary>Reads and imports the two built-in models once for all tests in the class.</summary>
public sealed class BuiltInImports : IDisposable
{
    public byte[] MiniLmBytes { get; } = BuiltInModels.MiniLM.ReadOnnx();
    public byte[] ArcticBytes { get; } = BuiltInModels.ArcticXs.ReadOnnx();
    public ImportedModel MiniLm { get; }
    public ImportedModel Arctic { get; }

    public BuiltInImports()
    {
        MiniLm = OnnxBertImporter.Load(MiniLmBytes, "minilm.onnx");
        Arctic = OnnxBertImporter.Load(ArcticBytes, "arctic-xs.onnx");
    }

    public void Dispose()
    {
        foreach (var t in MiniLm.StateDict.Values.Concat(Arctic.StateDict.Values)) t.Dispose();
    }
}

/// <summary>The importer on the real exports: all-MiniLM-L6-v2 (pytorch 1.10) and arctic-embed-xs (pytorch 2.2).</summary>
public class OnnxBertImporterBuiltInTests(BuiltInImports imports) : IClassFixture<BuiltInImports>
{
    /// <summary>Every key of HF BertModel for all-MiniLM-L6-v2 with its shape, written out rather than computed.</summary>
    static List<(string Key, long[] Shape)> MiniLmGolden()
    {
        var golden = new List<(string, long[])>
        {
            ("embeddings.word_embeddings.weight", [30522, 384]),
            ("embeddings.position_embeddings.weight", [512, 384]),
            ("embeddings.token_type_embeddings.weight", [2, 384]),
            ("embeddings.LayerNorm.weight", [384]),
            ("embeddings.LayerNorm.bias", [384]),
        };
        (string, long[])[] layer =
        [
            ("attention.self.query.weight", [384, 384]), ("attention.self.query.bias", [384]),
            ("attention.self.key.weight", [384, 384]), ("attention.self.key.bias", [384]),
            ("attention.self.value.weight", [384, 384]), ("attention.self.value.bias", [384]),
            ("attention.output.dense.weight", [384, 384]), ("attention.output.dense.bias", [384]),
            ("attention.output.LayerNorm.weight", [384]), ("attention.output.LayerNorm.bias", [384]),
            ("intermediate.dense.weight", [1536, 384]), ("intermediate.dense.bias", [1536]),
            ("output.dense.weight", [384, 1536]), ("output.dense.bias", [384]),
            ("output.LayerNorm.weight", [384]), ("output.LayerNorm.bias", [384]),
        ];
        for (int l = 0; l < 6; l++) golden.AddRange(layer.Select(e => ($"encoder.layer.{l}.{e.Item1}", e.Item2)));
        golden.Add(("pooler.dense.weight", [384, 384]));
        golden.Add(("pooler.dense.bias", [384]));
        return golden;
    }

    [Fact]
    public void MiniLm_has_every_bert_model_key_with_the_golden_shape_in_hf_order()
    {
        var golden = MiniLmGolden();
        Assert.Equal(103, golden.Count);
        Assert.Equal(golden.Select(g => g.Key), imports.MiniLm.StateDict.Keys);
        foreach (var (key, shape) in golden) Assert.Equal(shape, imports.MiniLm.StateDict[key].shape);
        Assert.Equal(22_713_216L, imports.MiniLm.StateDict.Values.Sum(t => t.numel()));
    }

    [Fact]
    public void MiniLm_config_is_read_from_the_graph()
    {
        var c = imports.MiniLm.Config;
        Assert.Equal((30522, 384, 6, 12, 1536, 512, 2), (c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize, c.MaxPositionEmbeddings, c.TypeVocabSize));
        Assert.Equal(1e-12, c.LayerNormEps);
        Assert.Equal("gelu", c.HiddenAct);
        Assert.Contains(imports.MiniLm.Notes, n => n == "num_attention_heads 12 from the attention Reshape");
        Assert.DoesNotContain(imports.MiniLm.Notes, n => n.Contains("no pooler"));
    }

    /// <summary>
    /// torch.onnx stores a Linear weight (in, out) for MatMul(x, W); the import must give HF's (out, in).
    /// In minilm, initializer 927 feeds the MatMul whose Add uses layer 0's query bias, 938 the intermediate
    /// dense; the pooler's Gemm has transB = 1, so its named weight is already (out, in).
    /// </summary>
    [Theory]
    [InlineData("minilm", "927", "encoder.layer.0.attention.self.query.weight", true)]
    [InlineData("minilm", "938", "encoder.layer.0.intermediate.dense.weight", true)]
    [InlineData("minilm", "1004", "encoder.layer.5.output.dense.weight", true)]
    [InlineData("minilm", "pooler.dense.weight", "pooler.dense.weight", false)]
    [InlineData("arctic", "onnx::MatMul_788", "encoder.layer.0.attention.self.query.weight", true)]
    [InlineData("arctic", "onnx::MatMul_799", "encoder.layer.0.intermediate.dense.weight", true)]
    public void Linear_weights_are_the_raw_initializers_in_hf_orientation(string which, string initializer, string key, bool transposed)
    {
        var (bytes, model) = which == "minilm" ? (imports.MiniLmBytes, imports.MiniLm) : (imports.ArcticBytes, imports.Arctic);
        var raw = OnnxModel.Parse(bytes, which).Graph.Initializers[initializer];
        var imported = model.StateDict[key];
        long rows = raw.Dims[0], cols = raw.Dims[1];
        Assert.Equal(transposed ? [cols, rows] : raw.Dims, imported.shape);
        var values = imported.data<float>().ToArray();
        for (long i = 0; i < rows; i++)
            for (long j = 0; j < cols; j++)
                Assert.Equal(raw.Floats![i * cols + j], transposed ? values[j * rows + i] : values[i * cols + j]);
    }

    [Fact]
    public void Arctic_xs_imports_without_pooler()
    {
        var model = imports.Arctic;
        var c = model.Config;
        Assert.Equal((30522, 384, 6, 12, 1536, 512, 2), (c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize, c.MaxPositionEmbeddings, c.TypeVocabSize));
        Assert.Equal(1e-12, c.LayerNormEps);
        Assert.Equal(MiniLmGolden().Select(g => g.Key).Where(k => !k.StartsWith("pooler.")), model.StateDict.Keys);
        Assert.Equal(22_713_216L - 384 * 384 - 384, model.StateDict.Values.Sum(t => t.numel()));
        Assert.Contains(model.Notes, n => n.StartsWith("the graph has no pooler"));
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(-2)]  // half the file
    public void A_truncated_minilm_is_invalid_data_naming_the_file(int length)
    {
        var bytes = imports.MiniLmBytes[..(length > 0 ? length : imports.MiniLmBytes.Length / -length)];
        var e = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Load(bytes, "minilm-cut.onnx"));
        Assert.StartsWith("minilm-cut.onnx: corrupt or truncated ONNX file", e.Message);
    }

    [Fact]
    public void Load_from_a_path_names_the_path_in_errors()
    {
        string path = Path.Combine(Path.GetTempPath(), $"sharptune-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, imports.MiniLmBytes[..5000]);
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Load(path));
            Assert.StartsWith(path + ": ", e.Message);
        }
        finally { File.Delete(path); }
        Assert.Throws<FileNotFoundException>(() => OnnxBertImporter.Load(path));
    }
}
