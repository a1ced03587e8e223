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
        if (head.IsSequenceTask && head.UsePooler && !head.MeanPooling && !encoder.HasPooler)
            throw new ArgumentException("This encoder has no pooler; read [CLS] directly (no pooler option).");
        bert = encoder;
        dropout = nn.Dropout(encoder.Config.HiddenDropoutProb);
        classifier = nn.Linear(encoder.Config.HiddenSize, head.NumLabels);
        if (head.UseCrf) crf = new ConditionalRandomField(head.NumLabels);
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
    public BertModel Encoder => bert;
    public Linear Classifier => classifier;
    public ConditionalRandomField? Crf => crf;
    public nn.Module? PromptEncoder => prompt_encoder;

    public IBackboneShape Backbone => bert.Config;

    public nn.Module Module => this;

    public bool IsHead(string parameterName) =>
        parameterName.StartsWith("classifier.", StringComparison.Ordinal) || parameterName.StartsWith("crf.", StringComparison.Ordinal);

    public string PeftTaskType => Head.Kind == TaskKind.Tokens ? "TOKEN_CLS" : "SEQ_CLS";

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
        Tensor logits;
        if (Head.IsSequenceTask)
        {
            // The real [CLS] sits after the virtual tokens (as THUDM's P-tuning reads it, not PEFT's position 0).
            var cls = Head.MeanPooling ? MeanOfRealTokens(output.LastHiddenState, inputs.AttentionMask, virtualTokens)
                : Head.UsePooler ? output.PooledOutput!
                : output.LastHiddenState[.., virtualTokens]; // (B, H)
            logits = classifier.forward(dropout.forward(cls)); // (B, K)
        }
        else
        {
            var positions = inputs.WordPositions ?? throw new ArgumentException("Token tasks need word positions.");
            long hiddenSize = output.LastHiddenState.shape[2];
            // Shifting by P strips the virtual positions: logits and labels stay aligned with the real words.
            var index = (positions + virtualTokens).unsqueeze(-1).expand(-1, -1, hiddenSize); // (B, W, H)
            var words = output.LastHiddenState.gather(1, index); // (B, W, H): each word's first sub-word
            logits = classifier.forward(dropout.forward(words)); // (B, W, K)
        }
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>The mean of the real tokens' states (B, H): virtual positions and padding left out.</summary>
    static Tensor MeanOfRealTokens(Tensor hidden, Tensor attentionMask, int virtualTokens)
    {
        var real = hidden[.., virtualTokens..]; // (B, T, H)
        var weights = attentionMask.to(hidden.dtype).unsqueeze(-1); // (B, T, 1)
        return (real * weights).sum(1) / weights.sum(1).clamp_min(1);
    }

    /// <summary>
    /// The training loss. Labels: (B) class ids for single-label, (B, K) 0/1 for multi-label, (B) values for
    /// regression, (B, W) class ids for token tasks with -100 on padding slots.
    /// </summary>
    public Tensor Loss(Tensor logits, Tensor labels, ModelInputs inputs)
    {
        switch (Head.Kind)
        {
            case TaskKind.SingleLabel:
            {
                using var weights = Head.ClassWeights is { } w ? tensor(w.ToArray(), device: logits.device) : null;
                return nn.functional.cross_entropy(logits, labels, weights, label_smoothing: Head.LabelSmoothing);
            }
            case TaskKind.MultiLabel:
                return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype));
            case TaskKind.Regression:
                return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype));
            default:
                if (crf is not null)
                    return crf.NegativeLogLikelihood(logits, labels, inputs.WordMask ?? throw new ArgumentException("CRF needs a word mask."));
                return nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), label_smoothing: Head.LabelSmoothing);
        }
    }

    /// <summary>
    /// Decoded predictions: the class per text (single-label), 0/1 per class (multi-label, threshold 0.5),
    /// the value (regression), or the label per word (token tasks; Viterbi with a CRF).
    /// </summary>
    public Prediction[] Predict(Tensor logits, ModelInputs inputs)
    {
        using var scope = NewDisposeScope();
        var cpu = logits.detach().cpu().to(ScalarType.Float32);
        int batch = (int)cpu.shape[0];
        var result = new Prediction[batch];
        switch (Head.Kind)
        {
            case TaskKind.SingleLabel:
            {
                var probabilities = cpu.softmax(-1);
                var best = probabilities.argmax(-1).data<long>().ToArray();
                for (int b = 0; b < batch; b++)
                    result[b] = new Prediction([(int)best[b]], probabilities[b].data<float>().ToArray(), null);
                break;
            }
            case TaskKind.MultiLabel:
            {
                var probabilities = cpu.sigmoid();
                for (int b = 0; b < batch; b++)
                {
                    var p = probabilities[b].data<float>().ToArray();
                    result[b] = new Prediction(Enumerable.Range(0, p.Length).Where(k => p[k] >= 0.5f).ToArray(), p, null);
                }
                break;
            }
            case TaskKind.Regression:
            {
                var values = cpu.squeeze(-1).data<float>().ToArray();
                for (int b = 0; b < batch; b++) result[b] = new Prediction([], [], values[b]);
                break;
            }
            default:
            {
                var mask = inputs.WordMask ?? throw new ArgumentException("Token tasks need a word mask.");
                var lengths = mask.sum(1).data<long>().ToArray();
                if (crf is not null)
                {
                    var paths = crf.Decode(logits.detach(), mask);
                    for (int b = 0; b < batch; b++) result[b] = new Prediction(paths[b].Select(t => (int)t).ToArray(), [], null);
                }
                else
                {
                    var best = cpu.argmax(-1);
                    for (int b = 0; b < batch; b++)
                        result[b] = new Prediction(best[b, ..(int)lengths[b]].data<long>().Select(t => (int)t).ToArray(), [], null);
                }
                break;
            }
        }
        return result;
    }
}

/// <summary>One example's prediction: class ids (one, several, or one per word), class probabilities, or a value.</summary>
public sealed record Prediction(int[] Labels, float[] Probabilities, float? Value);
