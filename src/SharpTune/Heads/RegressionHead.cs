using System.Globalization;
using SharpTune.Data;
using SharpTune.Metrics;
using static TorchSharp.torch;

namespace SharpTune.Heads;

/// <summary>One real number per text: mean squared error.</summary>
public sealed class RegressionHead(HeadOptions options) : SequenceHead(options)
{
    public override LabelKind DataLabels => LabelKind.Regression;

    public override string ProblemType => "regression";

    /// <param name="logits">(B, 1)</param>
    /// <param name="labels">(B) values.</param>
    public override Tensor Loss(Tensor logits, Tensor labels, ModelInputs inputs) =>
        nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype));

    public override Prediction[] Predict(Tensor logits, ModelInputs inputs)
    {
        using var scope = NewDisposeScope();
        var values = logits.detach().cpu().to(ScalarType.Float32).squeeze(-1).data<float>().ToArray();
        return values.Select(v => new Prediction([], [], v)).ToArray();
    }

    protected override Tensor Labels(IReadOnlyList<ITaskTarget> batch) => tensor(batch.Select(e => e.Value).ToArray());

    public override (IReadOnlyDictionary<string, double> Values, IMetricReport Report) Score(
        IReadOnlyList<ITaskTarget> data, Prediction[] predictions, IReadOnlyList<string>? labelNames)
    {
        var report = RegressionMetrics.Compute(predictions.Select(p => (double)p.Value!.Value).ToList(), data.Select(e => (double)e.Value).ToList());
        var values = new Dictionary<string, double> { ["mse"] = report.Mse, ["mae"] = report.Mae };
        if (report.Pearson is { } pearson) values["pearson"] = pearson;
        if (report.Spearman is { } spearman) values["spearman"] = spearman;
        return (values, report);
    }

    public override IReadOnlyList<string> MetricNames(IReadOnlyList<string>? labelNames) => ["mse", "mae", "pearson", "spearman"];

    public override string PrimaryMetric(IReadOnlyList<string>? labelNames) => "pearson";

    public override TextTarget ParseLabel(string label, LabelMap? labels, string separator, string source) =>
        float.TryParse(label.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out float value) && float.IsFinite(value)
            ? new(Value: value)
            : throw new DataFormatException(source, $"regression label '{label}' is not a number");
}
