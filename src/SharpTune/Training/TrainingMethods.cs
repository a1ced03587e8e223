using SharpTune.Peft;

namespace SharpTune.Training;

/// <summary>
/// What trains, by the name a user gives with <c>--method</c> (or its alias <c>--freeze</c>): a freezing policy
/// (<see cref="FreezePolicy"/>) or a parameter-efficient method (<see cref="PeftRegistry"/>). One parser for both.
/// </summary>
public static class TrainingMethods
{
    public const double DefaultLearningRate = 5e-5;

    static readonly string[] FreezeNames = ["full", "head", "embeddings", "freeze:K"];

    /// <summary>Every valid value, as help and errors list them.</summary>
    public static IReadOnlyList<string> Names => [.. FreezeNames, .. PeftRegistry.Names.Order(StringComparer.Ordinal)];

    /// <summary>The canonical name of <paramref name="text"/> (<c>lora</c>, <c>freeze:2</c>), or an error listing every valid value.</summary>
    public static string Parse(string text)
    {
        if (PeftRegistry.TryGet(text.Trim(), out var method)) return method!.Name;
        return FreezePolicy.TryParse(text)?.ToString() ?? throw new ArgumentException(UnknownMessage(text));
    }

    public static string UnknownMessage(string text) =>
        $"--method '{text}' is not known{Suggestions.DidYouMean(text, Names.Select(n => n == "freeze:K" ? "freeze:2" : n))}: " +
        $"use {string.Join(", ", Names)} (freeze:K freezes the embeddings and the bottom K layers)";

    /// <summary>The learning rate a method starts from when none is given: the method's own (METHODS.md), else 5e-5.</summary>
    public static double LearningRateFor(string method) =>
        PeftRegistry.TryGet(method, out var peft) ? peft!.DefaultLearningRate : DefaultLearningRate;
}
