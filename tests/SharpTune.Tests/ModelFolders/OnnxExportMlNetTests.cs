using Microsoft.ML;
using Microsoft.ML.Data;
using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.ModelFolders;
using static TorchSharp.torch;

namespace SharpTune.Tests.ModelFolders;

/// <summary>ML.NET's <c>ApplyOnnxModel</c> loads an exported task model and scores rows with it as SharpTune does.</summary>
[Trait(Tolerances.Category, Tolerances.NumericParity)]
public class OnnxExportMlNetTests
{
    const int Length = 9;

    /// <summary>One row as ML.NET reads it: the three inputs, fixed at <see cref="Length"/> tokens.</summary>
    sealed class Row
    {
        [VectorType(Length)] public long[] input_ids { get; set; } = [];
        [VectorType(Length)] public long[] attention_mask { get; set; } = [];
        [VectorType(Length)] public long[] token_type_ids { get; set; } = [];
    }

    [Fact]
    public void Ml_net_apply_onnx_model_runs_the_exported_file()
    {
        using var temp = new TestModels.TempFolder();
        var head = new HeadOptions(TaskKind.SingleLabel, 3, MeanPooling: true);
        using var model = new TaskModel(TestModels.TinyModel(seed: 13), head);
        using (no_grad()) model.Classifier.weight!.normal_(0, 1);
        model.eval();
        var spec = new TaskSpec { Kind = head.Kind, NumLabels = 3, MeanPooling = true };
        using var loaded = new LoadedTaskModel(model, "[PAD]\n[UNK]\n"u8.ToArray(), true, new LabelMap(["a", "b", "c"]), spec);
        string onnx = temp.File("model.onnx");
        OnnxExport.ExportTaskModel(loaded, "tiny", onnx);

        var (ids, mask, types) = OnnxRuntimeRun.Batch(4, Length, seed: 31);
        long[] Row(Tensor t, int b) => t[b].data<long>().ToArray();
        var rows = Enumerable.Range(0, 4).Select(b => new Row { input_ids = Row(ids, b), attention_mask = Row(mask, b), token_type_ids = Row(types, b) }).ToList();

        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(rows);
        string[] inputs = ["input_ids", "attention_mask", "token_type_ids"];
        // ML.NET feeds one row at a time: batch 1 and this length, given for the graph's dynamic axes.
        var shapes = inputs.ToDictionary(name => name, _ => new[] { 1, Length });
        var pipeline = ml.Transforms.ApplyOnnxModel(["logits"], inputs, onnx, shapes, gpuDeviceId: null, fallbackToCpu: false, recursionLimit: 100);
        var scored = pipeline.Fit(data).Transform(data);
        var logits = scored.GetColumn<float[]>("logits").ToArray();

        using var _ = no_grad();
        using var expected = model.forward(new ModelInputs(ids, mask, types));
        Assert.Equal(4, logits.Length);
        Tolerances.AssertClose(expected, tensor(logits.SelectMany(l => l).ToArray(), [4, 3]), Tolerances.DifferentKernelsThroughNetwork, "ML.NET logits");
    }
}
