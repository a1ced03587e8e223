using SharpTune.Data;
using SharpTune.Metrics;
using static TorchSharp.torch;

namespace SharpTune.Heads;

/// <summary>Any number of classes per text: a sigmoid per class and binary cross-entropy; a class is predicted at 0.5.</summary>
public sealed class MultiLabelClassificationHead(HeadOptions options) : SequenceHead(options)
{
    public override LabelKind DataLabels => LabelKind.MultiLabel;

    public override string ProblemType => "multi_label_classification";

    /// <param name="logits">(B, K)</param>
    /// <param name="labels">(B, K) 0/1.</param>
    public override Tensor Loss(Tensor logits, Tensor labels, ModelInputs inputs) =>
        nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype));

    public override Prediction[] Predict(Tensor logits, ModelInputs inputs)
    {
        using var scope = NewDisposeScope();
        var cpu = logits.detach().cpu().to(ScalarType.Float32);
        int batch = (int)cpu.shape[0];
        var probabilities = cpu.sigmoid();
        var result = new Prediction[batch];
        for (int b = 0; b < batch; b++)
        {
            var p = probabilities[b].data<float>().ToArray();
            result[b] = new Prediction(Enumerable.Range(0, p.Length).Where(k => p[k] >= 0.5f).ToArray(), p, null);
        }
        return result;
    }

    /// <returns>(B, K) float, 1 on each example's classes.</returns>
    protected override Tensor Labels(IReadOnlyList<ITaskTarget> batch)
    {
        int size = batch.Count, classes = Options.NumLabels;
        var targets = new float[size * classes];
        for (int b = 0; b < size; b++)
            foreach (int k in batch[b].ClassIds ?? []) targets[b * classes + k] = 1;
        return tensor(targets, [size, classes]);
    }

    public override (IReadOnlyDictionary<string, double> Values, IMetricReport Report) Score(
        IReadOnlyList<ITaskTarget> data, Prediction[] predictions, IReadOnlyList<string>? labelNames)
    {
        bool[] Hot(IEnumerable<int> ids) { var v = new bool[Options.NumLabels]; foreach (int i in ids) v[i] = true; return v; }
        var report = MultiLabelMetrics.Compute(predictions.Select(p => Hot(p.Labels)).ToArray(), data.Select(e => Hot(e.ClassIds ?? [])).ToArray(), labelNames);
        return (new Dictionary<string, double>
        {
            ["micro_f1"] = report.MicroF1, ["macro_f1"] = report.MacroF1, ["exact_match"] = report.ExactMatch,
        }, report);
    }

    public override IReadOnlyList<string> MetricNames(IReadOnlyList<string>? labelNames) => ["micro_f1", "macro_f1", "exact_match"];

    public override string PrimaryMetric(IReadOnlyList<string>? labelNames) => "macro_f1";

    public override TextTarget ParseLabel(string label, LabelMap? labels, string separator, string source) =>
        new(ClassIds: label.Split(separator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => Required(labels).GetId(l, source)).Distinct().Order().ToArray());
}
