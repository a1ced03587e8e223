using System.Text.Json;
using SharpTune.Bench.Reporting;
using SharpTune.Heads;
using SharpTune.Models.Decoders;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>What pretraining the base measured, kept beside its weights so a rerun can report it without training again.</summary>
public sealed record LmBaseRecord
{
    public required string Fingerprint { get; init; }
    public required long Parameters { get; init; }
    public required int TrainTexts { get; init; }
    public required long TrainTokens { get; init; }
    public required int TrainRows { get; init; }
    public required LmTrainingMeasure Pretraining { get; init; }
    /// <summary>Held-out A–J (informative) and K–R (imaginative) scores of the base.</summary>
    public required LmEvaluation Informative { get; init; }
    public required LmEvaluation Imaginative { get; init; }
}

/// <summary>
/// The suite's pretrained base: a Llama decoder trained from scratch on the A–J training files, saved as a Hugging Face
/// folder (config.json, model.safetensors) under bench/results/lm-base (lm-base-quick for --quick, lm-base-small for the small plan) with
/// <c>base.json</c>, what pretraining measured. A folder whose fingerprint (the plan's sizes and budgets and the data's
/// bytes) matches is reused; otherwise the base is trained again.
/// </summary>
public static class BrownLmBase
{
    public const string RecordFile = "base.json";

    public static string Folder(BenchContext context) =>
        System.IO.Path.Combine(context.RepoRoot, "bench", "results", context.Quick ? "lm-base-quick" : BrownLmPlan.SmallChosen ? "lm-base-small" : "lm-base");

    /// <summary>The record of a saved base with this fingerprint, or null.</summary>
    public static LmBaseRecord? Saved(BenchContext context, string fingerprint)
    {
        string path = System.IO.Path.Combine(Folder(context), RecordFile);
        if (!File.Exists(path)) return null;
        var record = JsonSerializer.Deserialize<LmBaseRecord>(File.ReadAllText(path), ResultWriter.Options);
        return record?.Fingerprint == fingerprint ? record : null;
    }

    /// <summary>Pretrains, scores and saves the base.</summary>
    public static LmBaseRecord Pretrain(BenchContext context, BrownLmPlan plan, string fingerprint)
    {
        var (train, texts, tokens) = BrownLmData.Rows(BrownLmData.Path(context, "train", informative: true), plan.BlockLength);
        Console.WriteLine($"A–J training files: {texts:N0} texts, {tokens:N0} tokens, {train.Count:N0} rows of {plan.BlockLength}");
        manual_seed(BrownLmPlan.Seed);
        var config = plan.LlamaConfig(BrownLmData.Tokenizer.VocabSize, BrownLmData.EndOfText);
        using var decoder = PretrainedDecoder.Create(config);
        using var model = new CausalLmModel(decoder);
        var parameters = ParameterSummary.Of(model);
        Console.WriteLine($"base: llama, {parameters.Total:N0} parameters (embedding {BrownLmData.Tokenizer.VocabSize * (long)plan.Hidden:N0}, tied with the head); " +
                          $"{plan.PretrainSteps} steps of {plan.PretrainBatch} x {plan.BlockLength} tokens");
        var options = new TrainingOptions
        {
            MaxSteps = plan.PretrainSteps, BatchSize = plan.PretrainBatch, LearningRate = plan.PretrainLearningRate,
            Schedule = "cosine", WarmupRatio = 0.05, WeightDecay = 0.1, Seed = BrownLmPlan.Seed, LogEverySteps = context.Quick ? 5 : 25,
        };
        var measure = BrownLmTraining.Train(model, train, options, "pretrain");
        Console.WriteLine($"pretrained in {measure.Seconds:F0} s ({measure.TokensPerSecond:F0} tokens/s)");
        var informative = Score(context, plan, model, informative: true);
        var imaginative = Score(context, plan, model, informative: false);

        string folder = Folder(context);
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        decoder.Save(folder);
        var record = new LmBaseRecord
        {
            Fingerprint = fingerprint, Parameters = parameters.Total, TrainTexts = texts, TrainTokens = tokens, TrainRows = train.Count,
            Pretraining = measure, Informative = informative, Imaginative = imaginative,
        };
        File.WriteAllText(System.IO.Path.Combine(folder, RecordFile), JsonSerializer.Serialize(record, ResultWriter.Options) + "\n");
        return record;
    }

    /// <summary>Held-out perplexity of <paramref name="model"/> on the A–J or K–R test files.</summary>
    public static LmEvaluation Score(BenchContext context, BrownLmPlan plan, CausalLmModel model, bool informative)
    {
        var (rows, texts, tokens) = BrownLmData.Rows(BrownLmData.Path(context, "test", informative), plan.BlockLength,
            informative ? plan.InformativeEvalRows : plan.ImaginativeEvalRows);
        var result = BrownLmTraining.Evaluate(model, rows);
        Console.WriteLine($"held-out {(informative ? "A–J" : "K–R")} ({texts:N0} texts, {tokens:N0} tokens, {rows.Count:N0} rows scored): " +
                          $"perplexity {result.Perplexity:F2} over {result.Tokens:N0} predicted tokens ({result.TokensPerSecond:F0} tokens/s)");
        return result;
    }
}
