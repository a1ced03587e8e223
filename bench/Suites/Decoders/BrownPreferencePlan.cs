using SharpTune.Peft;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>
/// The sizes of the Brown preference suite (<c>preference</c>): the pairs cut from the corpus, the genre classifier's
/// chunks and budget, the DPO and ORPO runs (LoRA on every Linear of the lm suite's base) and the generations scored.
/// </summary>
/// <param name="PromptTokens">P: GPT-2 tokens of a window's prompt.</param>
/// <param name="ContinuationTokens">C: tokens of a window's continuation, of a classifier chunk, and generated per prompt.</param>
/// <param name="TrainPairs">Pairs from the training files (half with a fiction prompt, half with an informative one).</param>
/// <param name="HeldOutPairs">Pairs from the held-out files, the runs' validation set and the before/after comparison.</param>
/// <param name="ClassifierChunks">Training chunks of each genre for the classifier.</param>
/// <param name="ClassifierTestChunks">Held-out chunks of each genre the classifier is scored on.</param>
/// <param name="GeneratePrompts">Held-out prompts (the first held-out pairs', so half of each genre) continued by each model.</param>
public sealed record BrownPreferencePlan(
    int PromptTokens, int ContinuationTokens, int TrainPairs, int HeldOutPairs,
    int ClassifierChunks, int ClassifierTestChunks, int ClassifierEpochs, int ClassifierBatch, double ClassifierLearningRate,
    int TuneSteps, int TuneBatch, double TuneLearningRate, int EvalEverySteps, int GeneratePrompts)
{
    public const int Seed = 42;
    public const int LoraRank = 8, LoraAlpha = 16;
    public const double Beta = 0.1, OrpoLambda = 0.1;
    /// <summary>Sampling temperature of the generations scored (top-k and top-p off: the model's own distribution, tempered).</summary>
    public const double Temperature = 0.8;

    /// <summary>
    /// Sized for the project's busy 2-core machine (about 35 minutes with the base cached): 1,024 training pairs seen once
    /// (128 steps of 8), 256 held-out pairs, a classifier on 768 chunks for one epoch, 128 prompts continued.
    /// </summary>
    public static readonly BrownPreferencePlan Full = new(
        PromptTokens: 24, ContinuationTokens: 24, TrainPairs: 1024, HeldOutPairs: 256,
        ClassifierChunks: 384, ClassifierTestChunks: 128, ClassifierEpochs: 1, ClassifierBatch: 16, ClassifierLearningRate: 1e-4,
        TuneSteps: 128, TuneBatch: 8, TuneLearningRate: 2e-3, EvalEverySteps: 128, GeneratePrompts: 128);

    /// <summary>A smoke run of every part in a few minutes: the lm suite's tiny quick base, a few pairs and steps.</summary>
    public static readonly BrownPreferencePlan Quick = new(
        PromptTokens: 16, ContinuationTokens: 16, TrainPairs: 48, HeldOutPairs: 16,
        ClassifierChunks: 48, ClassifierTestChunks: 16, ClassifierEpochs: 1, ClassifierBatch: 8, ClassifierLearningRate: 1e-4,
        TuneSteps: 6, TuneBatch: 4, TuneLearningRate: 2e-3, EvalEverySteps: 3, GeneratePrompts: 8);

    public static BrownPreferencePlan For(bool quick) => quick ? Quick : Full;

    /// <summary>LoRA on every Linear layer (q, k, v, o, gate, up, down) of the decoder.</summary>
    public static PeftSettings Lora => new() { LoraTargets = [LinearTargets.AllLinear], LoraR = LoraRank, LoraAlpha = LoraAlpha };

    public int WindowTokens => PromptTokens + ContinuationTokens;
}
