using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SharpTune.Checkpoints.Onnx;
using static SharpTune.Checkpoints.Onnx.OnnxGraphBuilder;

namespace SharpTune.Tests.Checkpoints.Onnx;

/// <summary>The ONNX writer: what it writes reads back through SharpTune's reader and runs in ONNX Runtime.</summary>
public class OnnxWriterTests
{
    /// <summary>y = Softmax(x W + b) over (batch, 3) -> (batch, 2), with an INTS attribute holding a negative value.</summary>
    static OnnxModelDefinition Small()
    {
        var graph = new OnnxGraphBuilder(17);
        string x = graph.Input("x", OnnxDataType.Float, OnnxDim.Dynamic("batch"), OnnxDim.Fixed(3));
        string w = graph.Weight("dense.weight", [3, 2], [1, -2, 0.5f, 4, -3, 0.25f]);
        string b = graph.Weight("dense.bias", [2], [0.1f, -0.2f]);
        string y = graph.Op("Add", "dense", [graph.Op("MatMul", "dense", [x, w]), b]);
        string squeezed = graph.Op("Unsqueeze", "out", [graph.Op("Softmax", "out", [y], Int("axis", -1)), graph.Ints([-1])]);
        graph.Output(graph.Op("Transpose", "out", [squeezed], IntList("perm", 0, 2, 1)), "probabilities", OnnxDataType.Float,
            OnnxDim.Dynamic("batch"), OnnxDim.Fixed(1), OnnxDim.Fixed(2));
        return graph.Build("small", new Dictionary<string, string> { ["answer"] = "42" }, "a test graph");
    }

    [Fact]
    public void What_is_written_reads_back_through_the_reader()
    {
        var model = OnnxModel.Parse(OnnxWriter.ToBytes(Small()), "small.onnx");
        Assert.Equal(OnnxWriter.IrVersion, model.IrVersion);
        Assert.Equal("SharpTune", model.ProducerName);
        Assert.Equal(["x"], model.Graph.Inputs);
        Assert.Equal(["probabilities"], model.Graph.Outputs);
        Assert.Equal(["MatMul", "Add", "Softmax", "Unsqueeze", "Transpose", "Identity"], model.Graph.Nodes.Select(n => n.OpType));
        Assert.Equal(-1, model.Graph.Nodes[2].Attribute("axis")!.I);
        Assert.Equal([0L, 2, 1], model.Graph.Nodes[4].Attribute("perm")!.Ints);
        var weight = model.Graph.Initializers["dense.weight"];
        Assert.Equal([3L, 2], weight.Dims);
        Assert.Equal([1, -2, 0.5f, 4, -3, 0.25f], weight.Floats!);
        Assert.Equal([-1L], model.Graph.Initializers.Values.Single(t => t.DataType == (int)OnnxDataType.Int64).Ints!);
    }

    [Fact]
    public void Onnx_runtime_runs_the_file_at_two_batch_sizes_and_sees_its_metadata()
    {
        using var temp = new TestModels.TempFolder();
        string path = temp.File("small.onnx");
        OnnxWriter.Write(path, Small());
        using var session = new InferenceSession(path);
        Assert.Equal("42", session.ModelMetadata.CustomMetadataMap["answer"]);
        Assert.Equal("SharpTune", session.ModelMetadata.ProducerName);
        Assert.Equal(["batch", ""], session.InputMetadata["x"].SymbolicDimensions);
        foreach (int batch in new[] { 1, 4 })
        {
            var x = Enumerable.Range(0, batch * 3).Select(i => (float)Math.Sin(i)).ToArray();
            using var results = session.Run([NamedOnnxValue.CreateFromTensor("x", new DenseTensor<float>(x, [batch, 3]))]);
            var y = results.Single().AsTensor<float>();
            Assert.Equal([batch, 1, 2], y.Dimensions.ToArray());
            for (int r = 0; r < batch; r++)
            {
                double z0 = x[r * 3] * 1 + x[r * 3 + 1] * 0.5 + x[r * 3 + 2] * -3 + 0.1;
                double z1 = x[r * 3] * -2 + x[r * 3 + 1] * 4 + x[r * 3 + 2] * 0.25 - 0.2;
                double p0 = 1 / (1 + Math.Exp(z1 - z0));
                Tolerances.AssertClose([p0, 1 - p0], [y[r, 0, 0], y[r, 0, 1]], Tolerances.Rounding * 10, $"row {r}");
            }
        }
    }

    [Fact]
    public void A_tensor_whose_values_do_not_fill_its_shape_is_refused_by_name()
    {
        var graph = new OnnxGraphBuilder(17);
        string x = graph.Input("x", OnnxDataType.Float, OnnxDim.Fixed(2));
        graph.Output(graph.Op("Add", "bad", [x, graph.Weight("bad.bias", [3], [1, 2])]), "y", OnnxDataType.Float, OnnxDim.Fixed(2));
        var error = Assert.Throws<ArgumentException>(() => OnnxWriter.ToBytes(graph.Build("bad", new Dictionary<string, string>())));
        Assert.Equal("tensor 'bad.bias' of shape [3] has 2 values, expected 3", error.Message);
    }

    [Fact]
    public void A_name_used_twice_is_refused()
    {
        var graph = new OnnxGraphBuilder(17);
        graph.Input("x", OnnxDataType.Float, OnnxDim.Fixed(2));
        var error = Assert.Throws<InvalidOperationException>(() => graph.Weight("x", [2], [1, 2]));
        Assert.Contains("'x'", error.Message);
    }
}
