using SharpTune.ModelFolders;
using SharpTune.Checkpoints;
using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.Metrics;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Inference;

/// <summary>One example's prediction in user terms: label names and their probabilities, or a value.</summary>
public sealed record LabeledPrediction(string Source, string Input, IReadOnlyList<string> Labels, IReadOnlyDictionary<string, float>? Probabilities, float? Value);

/// <summary>Evaluates and predicts with a saved fine-tuned model, reading data the way the model was trained.</summary>
public sealed class Predictor : IDisposable
{
    readonly LoadedTaskModel loaded;
    readonly bool ownsModel;
    readonly IEncoderTokenizer tokenizer;
    readonly ExampleEncoder encoder;

    /// <summary>Loads the model saved in <paramref name="modelFolder"/> (a run folder uses its best model).</summary>
    public Predictor(string modelFolder) : this(TaskModelFolder.Load(modelFolder), ownsModel: true) { }

    /// <summary>Predicts with an already loaded model, such as one adapter of an <see cref="Peft.AdapterHost"/>.</summary>
    public Predictor(LoadedTaskModel model, bool ownsModel = false)
    {
        loaded = model;
        this.ownsModel = ownsModel;
        tokenizer = loaded.CreateTokenizer();
        encoder = new ExampleEncoder(tokenizer, loaded.Spec.Head, loaded.Labels, loaded.Spec.MaxLength, loaded.Spec.LabelSeparator);
    }

    public TaskSpec Spec => loaded.Spec;
    public TaskModel Model => loaded.Model;

    /// <summary>
    /// How to read a data file for this model: the columns, separator and format the model was trained with,
    /// each replaced where <paramref name="reading"/> gives another (a test file that names its columns differently).
    /// </summary>
    public DataOptions DataOptions(bool labelled, DataReading? reading = null) => new DataOptions
    {
        Format = reading?.Format ?? DataFormat.Auto,
        TextColumn = reading?.TextColumn ?? Spec.TextColumn,
        TextPairColumn = reading?.TextPairColumn ?? Spec.TextPairColumn,
        LabelColumn = reading?.LabelColumn ?? Spec.LabelColumn,
        LabelSeparator = reading?.LabelSeparator ?? Spec.LabelSeparator,
        SkipBadRows = reading?.SkipBadRows ?? false,
        Labels = labelled ? Model.TaskHead.DataLabels : LabelKind.Unlabelled,
    }.Validate();

    /// <summary>The encoder for data read with <paramref name="options"/> (multi-label files split on their own separator).</summary>
    ExampleEncoder EncoderFor(DataOptions options) => options.LabelSeparator == Spec.LabelSeparator
        ? encoder
        : new ExampleEncoder(tokenizer, loaded.Spec.Head, loaded.Labels, loaded.Spec.MaxLength, options.LabelSeparator);

    /// <summary>Metrics of the model on a labelled file, with the skipped rows.</summary>
    public (IReadOnlyDictionary<string, double> Metrics, IMetricReport Report, int Examples, IReadOnlyList<string> Skipped) Evaluate(
        string path, DataReading? reading = null)
    {
        var options = DataOptions(labelled: true, reading);
        var encoder = EncoderFor(options);
        EncodedData data;
        IReadOnlyList<string> skipped;
        if (Spec.LabelsWords)
        {
            var set = DataReader.ReadTokens(path, options);
            if (UnseenTokenLabels(set.Examples) > 0) return EvaluateWithUnseenLabels(set);
            (data, skipped) = (encoder.Encode(set.Examples), set.SkippedRows);
        }
        else
        {
            var set = DataReader.ReadText(path, options);
            (data, skipped) = (encoder.Encode(set.Examples), set.SkippedRows);
        }
        var output = Evaluator.Run(Model, data.Examples, 32, tokenizer.PadId);
        var (values, report) = TaskMetrics.Compute(Spec.Head, loaded.Labels, data.Examples, output.Predictions);
        var metrics = new Dictionary<string, double>(values) { ["loss"] = output.Loss };
        return (metrics, report, data.Examples.Count, skipped);
    }

    int UnseenTokenLabels(IReadOnlyList<TokenExample> examples)
    {
        var labels = loaded.Labels ?? throw new InvalidDataException("The model folder has no labels.json.");
        return examples.Sum(e => e.Labels?.Count(l => !labels.Contains(l)) ?? 0);
    }

    /// <summary>
    /// Token data whose gold tags include some the model was never trained on (a rare tag of a test set,
    /// such as Brown's <c>wdt+dod</c>): those words count as errors, since no prediction can match them,
    /// rather than failing the evaluation or being dropped. Scored on tag names; no loss (an unknown tag
    /// has no class). Words past the model's maximum length get no prediction and are left out, as in the
    /// usual path. The metrics carry the number of such tokens as <c>unseen_label_tokens</c>.
    /// </summary>
    (IReadOnlyDictionary<string, double>, IMetricReport, int, IReadOnlyList<string>) EvaluateWithUnseenLabels(DataSet<TokenExample> set)
    {
        var predicted = PredictWords(set.Examples).Select(p => (IReadOnlyList<string>)p.Labels).ToList();
        var gold = set.Examples.Select((e, i) => (IReadOnlyList<string>)e.Labels!.Take(predicted[i].Count).ToList()).ToList();
        var report = TokenMetrics.Compute(predicted, gold);
        var labels = loaded.Labels!;
        var metrics = TaskMetrics.TokenValues(report, labels.Labels);
        metrics["unseen_label_tokens"] = gold.Sum(g => g.Count(l => !labels.Contains(l)));
        return (metrics, report, set.Examples.Count, set.SkippedRows);
    }

    /// <summary>Predictions for every example of a file (labels in it, if any, are ignored).</summary>
    public (IReadOnlyList<LabeledPrediction> Predictions, IReadOnlyList<string> Skipped) PredictFile(string path, DataReading? reading = null)
    {
        var options = DataOptions(labelled: false, reading);
        if (Spec.LabelsWords)
        {
            var set = DataReader.ReadTokens(path, options);
            return (PredictWords(set.Examples), set.SkippedRows);
        }
        var texts = DataReader.ReadText(path, options);
        return (PredictTexts(texts.Examples), texts.SkippedRows);
    }

    public IReadOnlyList<LabeledPrediction> PredictTexts(IReadOnlyList<TextExample> examples)
    {
        var data = encoder.Encode(examples, withLabels: false);
        var output = Evaluator.Run(Model, data.Examples, 32, tokenizer.PadId, withLoss: false);
        return examples.Select((e, i) => Describe(e.Source, e.TextPair is null ? e.Text : $"{e.Text} [SEP] {e.TextPair}", output.Predictions[i])).ToList();
    }

    public IReadOnlyList<LabeledPrediction> PredictWords(IReadOnlyList<TokenExample> examples)
    {
        var data = encoder.Encode(examples, withLabels: false);
        var output = Evaluator.Run(Model, data.Examples, 32, tokenizer.PadId, withLoss: false);
        return examples.Select((e, i) => Describe(e.Source, string.Join(' ', e.Words), output.Predictions[i])).ToList();
    }

    LabeledPrediction Describe(string source, string input, Prediction prediction)
    {
        if (prediction.Value is { } value) return new LabeledPrediction(source, input, [], null, value);
        var names = loaded.Labels ?? throw new InvalidDataException("The model folder has no labels.json.");
        var labels = prediction.Labels.Select(names.GetLabel).ToList();
        var probabilities = prediction.Probabilities.Length == 0 ? null
            : prediction.Probabilities.Select((p, k) => (names.GetLabel(k), p)).ToDictionary(x => x.Item1, x => x.p);
        return new LabeledPrediction(source, input, labels, probabilities, null);
    }

    public void Dispose()
    {
        if (ownsModel) loaded.Dispose();
    }
}
