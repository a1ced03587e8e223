using SharpTune.Data;
using SharpTune.ModelFolders;

namespace SharpTune.Training.Tasks;

/// <summary>
/// A language model trained on text (<c>--task causal-lm</c>): the decoder (Hugging Face folder or GGUF) with the chosen
/// method built in, the data read and tokenized by the model's rules (chat template, prompt masking, packing), the
/// next-token loss; saved as an adapter in PEFT's format, or the whole model.
/// </summary>
public sealed class CausalLmRecipe(FineTuneOptions options) : RunRecipe<CausalLmExample>(options)
{
    LanguageModelRun? built;
    GeneratedSamples? samples;

    public override RunPlan<CausalLmExample> Prepare(RunContext run)
    {
        var say = run.Say;
        built = LanguageModelRun.Build(run, Options);
        var (lm, model, maxLength) = (built.Lm, built.Model, built.MaxLength);

        // Data, read and tokenized by the model's rules.
        var (trainRows, validationRows, skipped) = run.ReadSplit(path => LanguageModelData.Read(path, Options.SkipBadRows, Options.Format), "rows", minimumToSplit: 2);
        var encoder = new CausalLmEncoder(lm.Tokenizer, lm.Template, maxLength, Options.TrainOnPrompt);
        if (lm.Template is null && trainRows.Concat(validationRows).Any(e => e.Messages is not null))
            say("note: the model ships no chat template; conversations are written as 'User: ...' / 'Assistant: ...' lines (give one with --chat-template)");
        var train = encoder.Encode(trainRows);
        var validation = encoder.Encode(validationRows);
        skipped.AddRange(train.Dropped.Concat(validation.Dropped));
        if (train.Examples.Count == 0)
        {
            run.ListSkipped(skipped);
            throw new ArgumentException($"{Options.Train}: no example has anything to learn within --max-length {maxLength}");
        }
        var rows = Options.Packing ? CausalLmEncoder.Pack(train.Examples, maxLength) : train.Examples;
        say($"data: {train.Examples.Count} training and {validation.Examples.Count} validation examples " +
            $"({trainRows.GroupBy(r => r.Form).Select(g => $"{g.Count()} {g.Key}").Aggregate((a, b) => $"{a}, {b}")})" +
            (Options.Packing ? $", packed into {rows.Count} rows of at most {maxLength} tokens" : "") +
            (skipped.Count > 0 ? $", {skipped.Count} rows skipped (listed in {run.SkippedRowsFile})" : ""));
        int truncated = train.Truncated + validation.Truncated;
        if (truncated > 0) say($"truncated {truncated} example(s) to --max-length {maxLength} ({train.Truncated} training, {validation.Truncated} validation)");

        samples = Options.EvalGenerate > 0 ? new GeneratedSamples(Path.Combine(run.Folder, "samples.jsonl"), lm.Tokenizer, Options.EvalGenerate) : null;
        var objective = new CausalLmObjective(model, lm.Tokenizer.PaddingId, samples);
        return new RunPlan<CausalLmExample>(objective, built.Parameters, rows, validation.Examples, train.Examples.Count, truncated, skipped,
            Options with { MaxLength = maxLength, Sources = new Dictionary<string, string>(Options.Sources) });
    }

    public override void SaveModel(string folder) => built!.Save(folder, Options.Method);

    public override IEnumerable<ITrainerCallback> Callbacks(string run) => samples is null ? [] : [samples];

    public override string? AdapterFolder => built?.Method is null ? null : LanguageModelFolder.AdapterFolder;

    public override string? CurveMetric => "perplexity";

    public override void ReportFinal(RunContext run, IReadOnlyDictionary<string, double> metrics, TrainerState state)
    {
        if (run.World.IsMain) samples?.OnEvaluate(new EvaluationInfo(state.GlobalStep, state.Epoch, metrics["loss"], metrics, false, "final"));
        run.Say($"validation: loss {metrics["loss"]:F4}, perplexity {metrics["perplexity"]:F2}" +
            (metrics.TryGetValue("rouge_l", out double rouge) ? $", exact match {metrics["exact_match"]:P1}, ROUGE-L {rouge:F3} (samples.jsonl)" : ""));
    }

    public override void Dispose()
    {
        built?.Dispose();
        base.Dispose();
    }
}
