using SharpTune.Data;
using SharpTune.Metrics;
using static TorchSharp.torch;

namespace SharpTune.Heads;

/// <summary>One class per text: softmax and cross-entropy (optionally class-weighted and label-smoothed).</summary>
public sealed class SequenceClassificationHead(HeadOptions options) : SequenceHead(options)
{
    public override LabelKind DataLabels => LabelKind.SingleLabel;

    public override string ProblemType => "single_label_classification";

    /// <param name="logits">(B, K)</param>
    /// <param name="labels">(B) class ids.</param>
    public override Tensor Loss(Tensor logits, Tensor labels, ModelInputs inputs)
    {
        using var weights = Options.ClassWeights is { } w ? tensor(w.ToArray(), device: logits.device) : null;
        return nn.functional.cross_entropy(logits, labels, weights, label_smoothing: Options.LabelSmoothing);
    }

    /// <summary>cross_entropy with class weights averages over the batch's weights: an example weighs its class's weight.</summary>
    public override double LossWeight(ITaskTarget example) => Options.ClassWeights is { } weights
        ? example.ClassId >= 0 && example.ClassId < weights.Count ? weights[example.ClassId] : 0
        : 1;

    /// <summary>The most likely class and every class's probability.</summary>
    public override Prediction[] Predict(Tensor logits, ModelInputs inputs)
    {
        using var scope = NewDisposeScope();
        var cpu = logits.detach().cpu().to(ScalarType.Float32);
        int batch = (int)cpu.shape[0];
        var probabilities = cpu.softmax(-1);
        var best = probabilities.argmax(-1).data<long>().ToArray();
        var result = new Prediction[batch];
        for (int b = 0; b < batch; b++)
            result[b] = new Prediction([(int)best[b]], probabilities[b].data<float>().ToArray(), null);
        return result;
    }

    protected override Tensor Labels(IReadOnlyList<ITaskTarget> batch) => tensor(batch.Select(e => (long)e.ClassId).ToArray());

    public override (IReadOnlyDictionary<string, double> Values, IMetricReport Report) Score(
        IReadOnlyList<ITaskTarget> data, Prediction[] predictions, IReadOnlyList<string>? labelNames)
    {
        var report = ClassificationMetrics.Compute(predictions.Select(p => p.Labels[0]).ToList(), data.Select(e => e.ClassId).ToList(), Options.NumLabels, labelNames);
        return (new Dictionary<string, double>
        {
            ["accuracy"] = report.Accuracy, ["macro_f1"] = report.MacroF1,
            ["macro_precision"] = report.MacroPrecision, ["macro_recall"] = report.MacroRecall,
        }, report);
    }

    public override IReadOnlyList<string> MetricNames(IReadOnlyList<string>? labelNames) =>
        ["accuracy", "macro_f1", "macro_precision", "macro_recall"];

    public override string PrimaryMetric(IReadOnlyList<string>? labelNames) => "macro_f1";

    public override TextTarget ParseLabel(string label, LabelMap? labels, string separator, string source) =>
        new(ClassId: Required(labels).GetId(label.Trim(), source));
}
