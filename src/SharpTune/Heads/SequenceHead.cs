using SharpTune.Data;
using SharpTune.Metrics;
using static TorchSharp.torch;

namespace SharpTune.Heads;

/// <summary>
/// The part every per-text head shares (HF <c>BertForSequenceClassification</c>): the classifier reads one vector per
/// text: [CLS] through the pretrained pooler, [CLS] directly, or the mean of the real tokens.
/// </summary>
public abstract class SequenceHead(HeadOptions options) : ITaskHead
{
    public HeadOptions Options { get; } = options;

    public bool ReadsPooler => Options.UsePooler && !Options.MeanPooling;

    public abstract LabelKind DataLabels { get; }

    public string ArchitectureSuffix => "ForSequenceClassification";

    public abstract string ProblemType { get; }

    string? ITaskHead.ProblemType => ProblemType;

    public string PeftTaskType => "SEQ_CLS";

    /// <returns>(B, H)</returns>
    public Tensor Features(Tensor lastHiddenState, Tensor? pooledOutput, ModelInputs inputs, int virtualTokens) =>
        // The real [CLS] sits after the virtual tokens (as THUDM's P-tuning reads it, not PEFT's position 0).
        Options.MeanPooling ? MeanOfRealTokens(lastHiddenState, inputs.AttentionMask, virtualTokens)
        : Options.UsePooler ? pooledOutput ?? throw new ArgumentException("This encoder has no pooler; read [CLS] directly (no pooler option).")
        : lastHiddenState[.., virtualTokens];

    /// <summary>The mean of the real tokens' states (B, H): virtual positions and padding left out.</summary>
    static Tensor MeanOfRealTokens(Tensor hidden, Tensor attentionMask, int virtualTokens)
    {
        var real = hidden[.., virtualTokens..]; // (B, T, H)
        var weights = attentionMask.to(hidden.dtype).unsqueeze(-1); // (B, T, 1)
        return (real * weights).sum(1) / weights.sum(1).clamp_min(1);
    }

    public abstract Tensor Loss(Tensor logits, Tensor labels, ModelInputs inputs);

    public virtual double LossWeight(ITaskTarget example) => 1;

    public abstract Prediction[] Predict(Tensor logits, ModelInputs inputs);

    public HeadBatch Collate(IReadOnlyList<ITaskTarget> batch) => new(Labels(batch));

    /// <summary>The batch's targets as one tensor.</summary>
    protected abstract Tensor Labels(IReadOnlyList<ITaskTarget> batch);

    public abstract (IReadOnlyDictionary<string, double> Values, IMetricReport Report) Score(
        IReadOnlyList<ITaskTarget> data, Prediction[] predictions, IReadOnlyList<string>? labelNames);

    public abstract IReadOnlyList<string> MetricNames(IReadOnlyList<string>? labelNames);

    public abstract string PrimaryMetric(IReadOnlyList<string>? labelNames);

    public abstract TextTarget ParseLabel(string label, LabelMap? labels, string separator, string source);

    protected static LabelMap Required(LabelMap? labels) => labels ?? throw new InvalidOperationException("A label map is needed to encode labels.");
}
