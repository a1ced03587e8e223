using SharpTune.Data;
using SharpTune.Metrics;
using static TorchSharp.torch;

namespace SharpTune.Heads;

/// <summary>
/// The part every per-word head shares (HF <c>BertForTokenClassification</c>): the classifier scores each word's first
/// sub-word; labels sit on those words, -100 on padding slots; token accuracy, and entity scores for BIO tag sets.
/// </summary>
public abstract class WordHead(HeadOptions options) : ITaskHead
{
    public HeadOptions Options { get; } = options;

    public bool ReadsPooler => false;

    public LabelKind DataLabels => LabelKind.SingleLabel;

    public string ArchitectureSuffix => "ForTokenClassification";

    public string? ProblemType => null;

    public string PeftTaskType => "TOKEN_CLS";

    /// <returns>(B, W, H): each word's first sub-word.</returns>
    public Tensor Features(Tensor lastHiddenState, Tensor? pooledOutput, ModelInputs inputs, int virtualTokens)
    {
        var positions = inputs.WordPositions ?? throw new ArgumentException("Token tasks need word positions.");
        long hiddenSize = lastHiddenState.shape[2];
        // Shifting by P strips the virtual positions: logits and labels stay aligned with the real words.
        var index = (positions + virtualTokens).unsqueeze(-1).expand(-1, -1, hiddenSize); // (B, W, H)
        return lastHiddenState.gather(1, index);
    }

    /// <param name="logits">(B, W, K)</param>
    /// <param name="labels">(B, W) class ids, -100 on padding slots.</param>
    public abstract Tensor Loss(Tensor logits, Tensor labels, ModelInputs inputs);

    /// <summary>The label of each real word.</summary>
    public abstract Prediction[] Predict(Tensor logits, ModelInputs inputs);

    public abstract double LossWeight(ITaskTarget example);

    public HeadBatch Collate(IReadOnlyList<ITaskTarget> batch)
    {
        int size = batch.Count;
        int words = Math.Max(1, batch.Max(e => e.WordStarts!.Length));
        var positions = new long[size * words];
        var present = new bool[size * words];
        var targets = new long[size * words];
        Array.Fill(targets, -100L);
        for (int b = 0; b < size; b++)
        {
            var starts = batch[b].WordStarts!;
            for (int w = 0; w < starts.Length; w++)
            {
                positions[b * words + w] = starts[w];
                present[b * words + w] = true;
                if (batch[b].WordLabels is { } wl) targets[b * words + w] = wl[w];
            }
        }
        return new HeadBatch(tensor(targets, [size, words]), tensor(positions, [size, words]), tensor(present, [size, words]));
    }

    public (IReadOnlyDictionary<string, double> Values, IMetricReport Report) Score(
        IReadOnlyList<ITaskTarget> data, Prediction[] predictions, IReadOnlyList<string>? labelNames)
    {
        var gold = data.Select(e => (IReadOnlyList<int>)(e.WordLabels ?? [])).ToList();
        var predicted = predictions.Select(p => (IReadOnlyList<int>)p.Labels).ToList();
        var report = TokenMetrics.Compute(predicted, gold, labelNames ?? Enumerable.Range(0, Options.NumLabels).Select(i => i.ToString()).ToList());
        return (TokenValues(report, labelNames), report);
    }

    public IReadOnlyList<string> MetricNames(IReadOnlyList<string>? labelNames) => IsBio(labelNames)
        ? ["token_accuracy", "entity_f1", "entity_precision", "entity_recall"]
        : ["token_accuracy"];

    public string PrimaryMetric(IReadOnlyList<string>? labelNames) => IsBio(labelNames) ? "entity_f1" : "token_accuracy";

    public TextTarget ParseLabel(string label, LabelMap? labels, string separator, string source) =>
        throw new ArgumentException("Token tasks read CoNLL data, a label per word, not labelled texts.");

    /// <summary>Token accuracy, and entity scores when the tag set is BIO-style (NER), where they mean something.</summary>
    public static Dictionary<string, double> TokenValues(TokenReport report, IReadOnlyList<string>? tagNames)
    {
        var values = new Dictionary<string, double> { ["token_accuracy"] = report.TokenAccuracy };
        if (IsBio(tagNames))
        {
            values["entity_f1"] = report.F1;
            values["entity_precision"] = report.Precision;
            values["entity_recall"] = report.Recall;
        }
        return values;
    }

    static bool IsBio(IReadOnlyList<string>? tagNames) => tagNames?.Any(n => n.StartsWith("B-", StringComparison.Ordinal)) == true;

    /// <summary>How many real words each row of the batch has.</summary>
    protected static long[] WordCounts(ModelInputs inputs) =>
        (inputs.WordMask ?? throw new ArgumentException("Token tasks need a word mask.")).sum(1).data<long>().ToArray();
}

/// <summary>One label per word by softmax: cross-entropy over the words (label smoothing allowed), argmax to predict.</summary>
public sealed class TokenClassificationHead(HeadOptions options) : WordHead(options)
{
    public override Tensor Loss(Tensor logits, Tensor labels, ModelInputs inputs) =>
        nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), label_smoothing: Options.LabelSmoothing);

    /// <summary>The cross-entropy averages over labelled words: an example weighs its words that carry a label.</summary>
    public override double LossWeight(ITaskTarget example) =>
        example.WordLabels is { } labels ? labels.Take(example.WordStarts?.Length ?? 0).Count(l => l != -100) : 0;

    public override Prediction[] Predict(Tensor logits, ModelInputs inputs)
    {
        using var scope = NewDisposeScope();
        var lengths = WordCounts(inputs);
        var best = logits.detach().cpu().to(ScalarType.Float32).argmax(-1);
        var result = new Prediction[lengths.Length];
        for (int b = 0; b < result.Length; b++)
            result[b] = new Prediction(best[b, ..(int)lengths[b]].data<long>().Select(t => (int)t).ToArray(), [], null);
        return result;
    }
}

/// <summary>One label per word through a linear-chain CRF over the word scores: its negative log-likelihood, Viterbi to predict.</summary>
public sealed class CrfTokenClassificationHead(HeadOptions options, ConditionalRandomField? crf) : WordHead(options)
{
    ConditionalRandomField Crf => crf ?? throw new InvalidOperationException(
        "This head was made without its CRF layer (to collate or score data); the task model's head has it.");

    /// <summary>The negative log-likelihood averages over sentences.</summary>
    public override double LossWeight(ITaskTarget example) => 1;

    public override Tensor Loss(Tensor logits, Tensor labels, ModelInputs inputs) =>
        Crf.NegativeLogLikelihood(logits, labels, inputs.WordMask ?? throw new ArgumentException("CRF needs a word mask."));

    public override Prediction[] Predict(Tensor logits, ModelInputs inputs)
    {
        using var scope = NewDisposeScope();
        var mask = inputs.WordMask ?? throw new ArgumentException("Token tasks need a word mask.");
        var paths = Crf.Decode(logits.detach(), mask);
        return paths.Select(path => new Prediction(path.Select(t => (int)t).ToArray(), [], null)).ToArray();
    }
}
