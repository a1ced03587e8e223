using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Heads;
using SharpTune.Metrics;
using SharpTune.Tokenization.Decoders;

namespace SharpTune.Training;

/// <summary>
/// <c>--eval-generate N</c>: at each evaluation, the first N validation examples that have a prompt (prompt/completion
/// and conversation rows) are completed greedily and scored against their reference (exact match, ROUGE-L); the texts
/// go to <c>samples.jsonl</c> in the run folder with the step, so a user can read what the model now says.
/// </summary>
public sealed class GeneratedSamples(string path, IDecoderTokenizer tokenizer, int count) : ITrainerCallback
{
    readonly List<JsonObject> pending = [];

    /// <summary>Generates for the chosen examples; returns the mean exact match and ROUGE-L (empty when none has a prompt).</summary>
    public IReadOnlyDictionary<string, double> Score(CausalLmModel model, IReadOnlyList<CausalLmExample> validation)
    {
        var chosen = validation.Select(Split).Where(s => s is not null).Take(count).Select(s => s!.Value).ToList();
        if (chosen.Count == 0) return new Dictionary<string, double>();
        var options = new GenerationOptions
        {
            Greedy = true, MaxNewTokens = Math.Max(1, chosen.Max(c => c.Reference.Length) + 8), StopTokens = tokenizer.StopIds,
        };
        var generator = new TextGenerator(model, options) { PadId = tokenizer.PaddingId };
        var outputs = generator.Generate(chosen.Select(c => (IReadOnlyList<int>)c.Prompt).ToList());
        double exact = 0, rouge = 0;
        pending.Clear();
        for (int i = 0; i < chosen.Count; i++)
        {
            string reference = tokenizer.Decode(chosen[i].Reference, skipSpecialTokens: true);
            string generated = tokenizer.Decode(outputs[i].TokenIds, skipSpecialTokens: true);
            bool match = TextOverlap.ExactMatch(generated, reference);
            double score = TextOverlap.RougeL(generated, reference);
            exact += match ? 1 : 0;
            rouge += score;
            pending.Add(new JsonObject
            {
                ["source"] = chosen[i].Source, ["prompt"] = tokenizer.Decode(chosen[i].Prompt, skipSpecialTokens: false),
                ["reference"] = reference, ["generated"] = generated, ["exact_match"] = match, ["rouge_l"] = Math.Round(score, 4),
            });
        }
        return new Dictionary<string, double> { ["exact_match"] = exact / chosen.Count, ["rouge_l"] = rouge / chosen.Count };
    }

    /// <summary>Writes the last evaluation's samples with its step.</summary>
    public void OnEvaluate(EvaluationInfo evaluation)
    {
        if (pending.Count == 0) return;
        using var writer = File.AppendText(path);
        foreach (var sample in pending)
        {
            sample["step"] = evaluation.Step;
            sample["trigger"] = evaluation.Trigger;
            writer.WriteLine(sample.ToJsonString());
        }
        pending.Clear();
    }

    /// <summary>The prompt (ids before the first target) and the reference (the first run of targets), or null for raw text.</summary>
    static (int[] Prompt, int[] Reference, string Source)? Split(CausalLmExample example)
    {
        int first = Array.FindIndex(example.Labels, 1, l => l != -100);
        if (first <= 1) return null; // raw text trains from its second token: nothing to prompt with
        int end = first;
        while (end < example.Labels.Length && example.Labels[end] != -100) end++;
        return (example.InputIds[..first].Select(i => (int)i).ToArray(), example.InputIds[first..end].Select(i => (int)i).ToArray(), example.Source);
    }
}
