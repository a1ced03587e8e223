using SharpTune.Models;
using SharpTune.Models.Bert;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Heads;

/// <summary>
/// A batch of encoded inputs. For token tasks, <see cref="WordPositions"/> (B, W) holds the position of
/// each word's first sub-word and <see cref="WordMask"/> (B, W) which of the W slots are real words.
/// </summary>
public sealed record ModelInputs(Tensor InputIds, Tensor AttentionMask, Tensor TokenTypeIds,
    Tensor? WordPositions = null, Tensor? WordMask = null) : IDisposable
{
    public long BatchSize => InputIds.shape[0];

    public void Dispose()
    {
        InputIds.Dispose();
        AttentionMask.Dispose();
        TokenTypeIds.Dispose();
        WordPositions?.Dispose();
        WordMask?.Dispose();
    }
}

/// <summary>
/// A pretrained encoder with a task head. Parameter names follow Hugging Face's task models
/// (<c>bert.*</c>, <c>classifier.weight</c>, <c>classifier.bias</c>) plus <c>crf.*</c>, so a saved model
/// loads in transformers as <c>BertForSequenceClassification</c> or <c>BertForTokenClassification</c>.
/// </summary>
public sealed class TaskModel : nn.Module, ITunableModel
{
    readonly BertModel bert;
    readonly Dropout dropout;
    readonly Linear classifier;
    readonly ConditionalRandomField? crf;
    readonly nn.Module? prompt_encoder;

    /// <param name="encoder">The pretrained encoder (its keys become <c>bert.*</c>).</param>
    /// <param name="head">The task head.</param>
    /// <param name="promptEncoder">A prompt method's module implementing <see cref="IEncoderInputAdapter"/>, or null.</param>
    public TaskModel(BertModel encoder, HeadOptions head, nn.Module? promptEncoder = null) : base(nameof(TaskModel))
    {
        if (promptEncoder is not null and not IEncoderInputAdapter)
            throw new ArgumentException($"{promptEncoder.GetType().Name} does not implement {nameof(IEncoderInputAdapter)}.");
        Head = head.Validate();
        bert = encoder;
        dropout = nn.Dropout(encoder.Config.HiddenDropoutProb);
        classifier = nn.Linear(encoder.Config.HiddenSize, head.NumLabels);
        if (head.UseCrf) crf = new ConditionalRandomField(head.NumLabels);
        TaskHead = TaskHeads.Create(head, crf);
        if (TaskHead.ReadsPooler && !encoder.HasPooler)
            throw new ArgumentException("This encoder has no pooler; read [CLS] directly (no pooler option).");
        prompt_encoder = promptEncoder;
        RegisterComponents();

        // Follows HF's _init_weights for a new head: normal(0, initializer_range) weights, zero bias.
        using (no_grad())
        {
            classifier.weight!.normal_(0, encoder.Config.InitializerRange);
            classifier.bias!.zero_();
        }
    }

    public HeadOptions Head { get; }
    /// <summary>The task's head: what the classifier reads, the loss, the decoding of predictions.</summary>
    public ITaskHead TaskHead { get; }
    public BertModel Encoder => bert;
    public Linear Classifier => classifier;
    public ConditionalRandomField? Crf => crf;
    public nn.Module? PromptEncoder => prompt_encoder;

    public IBackboneShape Backbone => bert.Config;

    public nn.Module Module => this;

    public bool IsHead(string parameterName) =>
        parameterName.StartsWith("classifier.", StringComparison.Ordinal) || parameterName.StartsWith("crf.", StringComparison.Ordinal);

    public string PeftTaskType => TaskHead.PeftTaskType;

    /// <summary>The classifier only: transformers' task models have no crf, so PEFT would find nothing to wrap (crf.* still rides along).</summary>
    public IReadOnlyList<string> ModulesToSave { get; } = ["classifier"];

    /// <summary>Scores: (B, K) for sequence tasks, (B, W, K) per word for token tasks.</summary>
    public Tensor forward(ModelInputs inputs)
    {
        using var scope = NewDisposeScope();
        var encoderInputs = (prompt_encoder as IEncoderInputAdapter)?.Prepare(bert, inputs.InputIds, inputs.AttentionMask, inputs.TokenTypeIds)
            ?? new EncoderInputs(inputs.InputIds, null, inputs.AttentionMask, inputs.TokenTypeIds, null, 0);
        int virtualTokens = encoderInputs.VirtualTokens;
        using var output = bert.forward(encoderInputs.InputIds, encoderInputs.AttentionMask, encoderInputs.TokenTypeIds,
            encoderInputs.InputsEmbeds, encoderInputs.Prefixes, poolPosition: virtualTokens);
        var features = TaskHead.Features(output.LastHiddenState, output.PooledOutput, inputs, virtualTokens); // (B, H) or (B, W, H)
        var logits = classifier.forward(dropout.forward(features)); // (B, K) or (B, W, K)
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The training loss. Labels: (B) class ids for single-label, (B, K) 0/1 for multi-label, (B) values for
    /// regression, (B, W) class ids for token tasks with -100 on padding slots.
    /// </summary>
    public Tensor Loss(Tensor logits, Tensor labels, ModelInputs inputs) => TaskHead.Loss(logits, labels, inputs);

    /// <summary>
    /// Decoded predictions: the class per text (single-label), 0/1 per class (multi-label, threshold 0.5),
    /// the value (regression), or the label per word (token tasks; Viterbi with a CRF).
    /// </summary>
    public Prediction[] Predict(Tensor logits, ModelInputs inputs) => TaskHead.Predict(logits, inputs);
}
