using SharpTune.Data;
using SharpTune.Metrics;
using static TorchSharp.torch;

namespace SharpTune.Heads;

/// <summary>
/// What one kind of task does on top of the encoder, as Hugging Face's <c>*ForSequenceClassification</c> and
/// <c>*ForTokenClassification</c> do: which hidden states the classifier scores, the loss, how scores become
/// predictions, how a batch's targets become tensors, and which metrics judge it. One class per kind, chosen once
/// from <see cref="HeadOptions"/> by <see cref="TaskHeads.Create"/>; nothing downstream switches on <see cref="TaskKind"/>.
/// </summary>
/// <remarks>
/// A head holds no parameters of its own: the classifier (<c>classifier.*</c>) and the CRF (<c>crf.*</c>) are registered
/// by <see cref="TaskModel"/> under Hugging Face's keys, and the CRF is handed to the head that uses it. So a head made
/// from options alone (to collate a batch or score predictions) draws no random numbers and allocates no tensors.
/// </remarks>
public interface ITaskHead
{
    HeadOptions Options { get; }

    /// <summary>Whether the head reads the encoder's pretrained pooler (so the encoder must have one).</summary>
    bool ReadsPooler { get; }

    /// <summary>The labels a data file must carry for this task.</summary>
    LabelKind DataLabels { get; }

    /// <summary>The Hugging Face task-model class suffix (<c>ForSequenceClassification</c>) and <c>problem_type</c> of config.json.</summary>
    string ArchitectureSuffix { get; }
    string? ProblemType { get; }

    /// <summary>PEFT's <c>task_type</c> of an adapter for this task (<c>SEQ_CLS</c>, <c>TOKEN_CLS</c>).</summary>
    string PeftTaskType { get; }

    /// <summary>
    /// What the classifier scores, read from the encoder's output: (B, H) per text, (B, W, H) per word. The real tokens start
    /// after <paramref name="virtualTokens"/> prompt positions.
    /// </summary>
    /// <param name="lastHiddenState">(B, P + T, H)</param>
    /// <param name="pooledOutput">(B, H), or null for an encoder without pooler.</param>
    Tensor Features(Tensor lastHiddenState, Tensor? pooledOutput, ModelInputs inputs, int virtualTokens);

    /// <summary>The training loss of the classifier's scores against the labels <see cref="Collate"/> made.</summary>
    Tensor Loss(Tensor logits, Tensor labels, ModelInputs inputs);

    /// <summary>
    /// What one example weighs in the loss's average: the loss averages over examples (1 each), over labelled words (token
    /// tasks by softmax) or over class weights (weighted single-label classification), so data-parallel shards combine to it.
    /// </summary>
    double LossWeight(ITaskTarget example);

    /// <summary>Decoded predictions, one per example of the batch.</summary>
    Prediction[] Predict(Tensor logits, ModelInputs inputs);

    /// <summary>The batch's labels as a tensor, and for token tasks where each word starts.</summary>
    HeadBatch Collate(IReadOnlyList<ITaskTarget> batch);

    /// <summary>The metrics (flat name → value) and the full report of predictions against the examples' targets.</summary>
    (IReadOnlyDictionary<string, double> Values, IMetricReport Report) Score(
        IReadOnlyList<ITaskTarget> data, Prediction[] predictions, IReadOnlyList<string>? labelNames);

    /// <summary>The metrics <see cref="Score"/> reports for this label set, without the loss.</summary>
    IReadOnlyList<string> MetricNames(IReadOnlyList<string>? labelNames);

    /// <summary>The task's headline metric, which chooses the best model unless <c>--metric</c> names another.</summary>
    string PrimaryMetric(IReadOnlyList<string>? labelNames);

    /// <summary>
    /// The target a text's label gives this task (its class, its classes split at <paramref name="separator"/>, or its
    /// value), class ids from <paramref name="labels"/>; errors name <paramref name="source"/> (file:line). Per-word heads
    /// label words, not texts, and refuse.
    /// </summary>
    TextTarget ParseLabel(string label, LabelMap? labels, string separator, string source);
}

/// <summary>What a text's label became: a class id (single-label), class ids (multi-label) or a value (regression).</summary>
public readonly record struct TextTarget(int ClassId = -1, int[]? ClassIds = null, float Value = 0);

/// <summary>
/// What a head reads of one encoded example. Exactly one target is set, by task: <see cref="ClassId"/> (single-label),
/// <see cref="ClassIds"/> (multi-label), <see cref="Value"/> (regression) or <see cref="WordLabels"/> (token tasks, one per
/// entry of <see cref="WordStarts"/>); an example read for prediction has none.
/// </summary>
public interface ITaskTarget
{
    int ClassId { get; }
    int[]? ClassIds { get; }
    float Value { get; }
    int[]? WordStarts { get; }
    int[]? WordLabels { get; }
}

/// <summary>A batch's labels; token tasks add each word's first sub-word position (B, W) and which of the W slots are words.</summary>
public sealed record HeadBatch(Tensor Labels, Tensor? WordPositions = null, Tensor? WordMask = null);

/// <summary>One example's prediction: class ids (one, several, or one per word), class probabilities, or a value.</summary>
public sealed record Prediction(int[] Labels, float[] Probabilities, float? Value);
