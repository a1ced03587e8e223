using SharpTune.Data;
using SharpTune.Models.Decoders;
using SharpTune.Tests.Checkpoints.Gguf;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// Preference pairs and multiple-choice questions scored by log-likelihood, checked against the same sums taken one
/// sequence at a time with no padding and no batching: log p(continuation | context), every continuation token counted.
/// </summary>
public class LanguageModelEvaluationTests
{
    static LanguageModel TinyGguf(TestModels.TempFolder temp)
    {
        var sizes = new TinyDecoderSizes(300, 32, 2, 4, 2, 37, 96);
        string path = temp.File("tiny.gguf");
        var weights = GgufTestModels.HfLlama(sizes, bias: false, tied: false, seed: 11);
        foreach (var (name, tensor) in weights.ToList())
            if (tensor.dim() == 2) weights[name] = tensor * 0.2f;   // a spread of likelihoods the choices can differ by
        GgufTestModels.WriteLlama(path, "llama", sizes, weights);
        return LanguageModel.Load(path);
    }

    /// <summary>Sum of log p(continuation tokens) after the context, from one unpadded forward pass.</summary>
    static double Reference(LanguageModel lm, string context, string continuation, bool eos)
    {
        var prompt = lm.Tokenizer.Encode(context, addSpecialTokens: false).Select(i => (long)i).ToList();
        if (lm.Tokenizer.AddBos && lm.Tokenizer.BosId is { } bos) prompt.Insert(0, bos);
        var target = lm.Tokenizer.Encode(continuation, addSpecialTokens: false).Select(i => (long)i).ToList();
        if (eos) target.Add(lm.Tokenizer.EosId!.Value);
        var ids = prompt.Concat(target).ToArray();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = lm.Model.Forward(tensor(ids).unsqueeze(0)).to(float64);
        var logProbs = nn.functional.log_softmax(logits[0], -1);
        double sum = 0;
        for (int i = prompt.Count; i < ids.Length; i++) sum += logProbs[i - 1, ids[i]].item<double>();
        return sum;
    }

    [Fact]
    public void Multiple_choice_scores_each_choice_as_the_continuation_of_its_context_and_picks_as_lm_evaluation_harness()
    {
        using var temp = new TestModels.TempFolder();
        using var lm = TinyGguf(temp);
        MultipleChoiceItem[] items =
        [
            new("The river runs to the", ["sea", "mountain top", "a"], 0, "q:1"),
            new("Two plus two is", ["four", "five"], 1, "q:2"),
            new("Colour of the sky:", ["blue", "green", "a very long and unlikely answer"], 2, "q:3"),
        ];
        var scores = LanguageModelEvaluation.MultipleChoice(lm, items, batchSize: 2);

        for (int q = 0; q < items.Length; q++)
        {
            var expected = items[q].Choices.Select(c => Reference(lm, items[q].Context, " " + c, eos: false)).ToArray();
            Tolerances.AssertClose(expected, scores.LogLikelihoods[q], Tolerances.DifferentKernelsThroughNetwork, $"question {q + 1}");
            Assert.Equal(Array.IndexOf(expected, expected.Max()), scores.Picked[q]);
        }
        double accuracy = items.Select((item, q) => scores.Picked[q] == item.Answer ? 1.0 : 0.0).Average();
        Assert.Equal(accuracy, scores.Accuracy, 12);
        // acc_norm: the likelihood per character of the continuation (with its leading space), as the harness divides it.
        double normalized = items.Select((item, q) =>
        {
            var perCharacter = scores.LogLikelihoods[q].Select((v, c) => v / (" " + item.Choices[c]).Length).ToArray();
            return Array.IndexOf(perCharacter, perCharacter.Max()) == item.Answer ? 1.0 : 0.0;
        }).Average();
        Assert.Equal(normalized, scores.NormalizedAccuracy, 12);
    }

    [Fact]
    public void Preference_pairs_sum_each_completion_with_its_end_of_text_and_never_the_prompt()
    {
        using var temp = new TestModels.TempFolder();
        using var lm = TinyGguf(temp);
        PreferencePair Pair(string prompt, string chosen, string rejected, int line) =>
            new(new LanguageModelExample(null, prompt, chosen, null, $"p:{line}"), new LanguageModelExample(null, prompt, rejected, null, $"p:{line}"), $"p:{line}");
        PreferencePair[] pairs = [Pair("q1:", " yes", " no", 1), Pair("a longer prompt here:", " short", " a much longer rejected answer", 2), Pair("x", " y", " z", 3)];
        var scores = LanguageModelEvaluation.Preferences(lm, pairs, batchSize: 4);

        var chosen = pairs.Select(p => Reference(lm, p.Chosen.Prompt!, p.Chosen.Completion!, eos: true)).ToArray();
        var rejected = pairs.Select(p => Reference(lm, p.Rejected.Prompt!, p.Rejected.Completion!, eos: true)).ToArray();
        Tolerances.AssertClose(chosen, scores.Chosen, Tolerances.DifferentKernelsThroughNetwork, "chosen");
        Tolerances.AssertClose(rejected, scores.Rejected, Tolerances.DifferentKernelsThroughNetwork, "rejected");
        var pairsScored = scores.Chosen.Zip(scores.Rejected).ToList();
        Assert.Equal(pairsScored.Average(p => p.First > p.Second ? 1.0 : 0.0), scores.Accuracy, 12);
        Assert.Equal(pairsScored.Average(p => p.First - p.Second), scores.Margin, 9);
    }
}
