namespace SharpTune.Heads;

/// <summary>What the model is fine-tuned to predict.</summary>
public enum TaskKind
{
    /// <summary>One class per text (or text pair): softmax and cross-entropy.</summary>
    SingleLabel,
    /// <summary>Any number of classes per text: sigmoid per class and binary cross-entropy.</summary>
    MultiLabel,
    /// <summary>One real number per text: mean squared error.</summary>
    Regression,
    /// <summary>One label per word (first sub-word of each word): cross-entropy or a CRF.</summary>
    Tokens,
}

/// <summary>The head on top of the encoder.</summary>
/// <param name="Kind">The task.</param>
/// <param name="NumLabels">Output size: classes, or 1 for regression.</param>
/// <param name="UseCrf">Token tasks only: a linear-chain CRF over the per-word scores.</param>
/// <param name="UsePooler">Sequence tasks: read [CLS] through the pretrained pooler (dense + tanh), as HF does, or directly.</param>
/// <param name="MeanPooling">Sequence tasks: average the real tokens' states instead of reading [CLS] (how sentence-embedding
/// models such as minilm were trained; not what transformers' BertForSequenceClassification does).</param>
/// <param name="ClassWeights">Single-label only: per-class weights of the cross-entropy.</param>
/// <param name="LabelSmoothing">Single-label and token softmax: label smoothing of the cross-entropy.</param>
public sealed record HeadOptions(
    TaskKind Kind,
    int NumLabels,
    bool UseCrf = false,
    bool UsePooler = true,
    IReadOnlyList<float>? ClassWeights = null,
    double LabelSmoothing = 0,
    bool MeanPooling = false)
{
    public HeadOptions Validate()
    {
        if (NumLabels < 1) throw new ArgumentException($"The head needs at least one output, got {NumLabels}.");
        if (Kind == TaskKind.Regression && NumLabels != 1) throw new ArgumentException($"Regression has one output, got {NumLabels}.");
        if (Kind is TaskKind.SingleLabel && NumLabels < 2) throw new ArgumentException($"Classification needs at least two classes, the data has {NumLabels}.");
        if (UseCrf && Kind != TaskKind.Tokens) throw new ArgumentException("A CRF layer is only for token tasks.");
        if (ClassWeights is not null && (Kind != TaskKind.SingleLabel || ClassWeights.Count != NumLabels))
            throw new ArgumentException($"Class weights apply to single-label classification and need one weight per class ({NumLabels}).");
        if (LabelSmoothing is < 0 or >= 1) throw new ArgumentException($"Label smoothing must be in [0, 1), got {LabelSmoothing}.");
        return this;
    }

    public bool IsSequenceTask => Kind != TaskKind.Tokens;
}
