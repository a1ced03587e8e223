using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.Models.Decoders;
using SharpTune.Tests.Checkpoints.Gguf;
using SharpTune.Tests.Heads;
using SharpTune.Tokenization.ChatTemplates;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>Language-model training: which tokens are targets, packing, and resuming.</summary>
public class CausalLmTrainingTests
{
    static LanguageModel TinyGguf(TestModels.TempFolder temp)
    {
        var sizes = new TinyDecoderSizes(300, 32, 2, 4, 2, 37, 96);
        string path = temp.File("tiny.gguf");
        GgufTestModels.WriteLlama(path, "llama", sizes, GgufTestModels.HfLlama(sizes, bias: false, tied: false));
        return LanguageModel.Load(path);
    }

    /// <summary>The target tokens as text (this tiny vocabulary spells spaces as ▁ bytes), spaces trimmed.</summary>
    static string Targets(LanguageModel lm, CausalLmExample e) =>
        lm.Tokenizer.Decode(e.Labels.Where(l => l != -100).Select(l => (int)l), skipSpecialTokens: true).Replace('▁', ' ').Trim();

    [Fact]
    public void Completions_and_assistant_turns_are_the_only_targets_unless_the_prompt_is_asked_for()
    {
        using var temp = new TestModels.TempFolder();
        using var lm = TinyGguf(temp);
        var template = ChatTemplate.Parse(
            "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}", "test");
        LanguageModelExample[] rows =
        [
            new(null, "question", " answer", null, "t:1"),
            new(null, null, null, [new Turn("system", "be brief"), new Turn("user", "hi"), new Turn("assistant", "yo"), new Turn("user", "again"), new Turn("assistant", "ok")], "t:2"),
            new("plain text", null, null, null, "t:3"),
        ];
        var encoded = new CausalLmEncoder(lm.Tokenizer, template, 200, trainOnPrompt: false).Encode(rows).Examples;
        Assert.Equal(lm.Tokenizer.BosId, (int)encoded[0].InputIds[0]);
        Assert.Equal(lm.Tokenizer.EosId, (int)encoded[0].InputIds[^1]);
        Assert.Equal("answer", Targets(lm, encoded[0]));
        Assert.Equal(lm.Tokenizer.EosId, (int)encoded[0].Labels[^1]);                 // the end is learnt too
        Assert.Equal("yook", Targets(lm, encoded[1]));             // both assistant turns, nothing of the template
        Assert.Equal("plain text", Targets(lm, encoded[2]));

        var withPrompt = new CausalLmEncoder(lm.Tokenizer, template, 200, trainOnPrompt: true).Encode(rows[..1]).Examples;
        Assert.Equal("question  answer", Targets(lm, withPrompt[0]));

        // Cut by --max-length: counted; left with nothing to learn: dropped and named.
        var cut = new CausalLmEncoder(lm.Tokenizer, template, 9, trainOnPrompt: false).Encode(rows);
        Assert.Equal(3, cut.Truncated);
        Assert.Contains(cut.Dropped, d => d.StartsWith("t:2"));
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void A_packed_row_gives_the_loss_of_its_examples_batched_apart()
    {
        using var model = CausalLmMethodTests.Build("llama", "lora");
        var examples = new[] { 7, 4, 11 }.Select((n, k) =>
        {
            var ids = Enumerable.Range(0, n).Select(i => (long)(1 + (i * 7 + k * 13) % 90)).ToArray();
            var labels = ids.Select((id, i) => k == 1 && i < 2 ? -100L : id).ToArray(); // one with a masked prompt
            return new CausalLmExample(ids, labels, $"e{k}");
        }).ToList();
        var packed = CausalLmEncoder.Pack(examples, 64);
        Assert.Single(packed);
        Assert.Equal([0, 7, 11], packed[0].SegmentStarts!);

        using var noGrad = no_grad();
        var objective = new CausalLmObjective(model, padId: 0);
        double apart = objective.Loss(examples).item<float>();
        double together = objective.Loss(packed).item<float>();
        Tolerances.AssertClose([apart], [together], Tolerances.DifferentKernels, "packed against padded batch");
    }

    [Theory]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    [InlineData("lora")]
    [InlineData("lora-olora-dora")]
    [InlineData("prefix")]
    public void An_interrupted_and_resumed_language_model_run_gives_the_losses_of_one_left_alone(string method)
    {
        var data = Enumerable.Range(0, 20).Select(k =>
        {
            var ids = Enumerable.Range(0, 5 + k % 6).Select(i => (long)(1 + (i * 5 + k * 3) % 90)).ToArray();
            return new CausalLmExample(ids, ids, $"row {k}");
        }).ToList();
        // The variants with LoRA+'s second rate: the optimizer's groups and their state resume too.
        var options = new TrainingOptions { Epochs = 2, BatchSize = 4, LearningRate = 1e-2, Seed = 3, LogEverySteps = 1, EvalEverySteps = 2,
            LoraPlusLrRatio = method.StartsWith("lora-", StringComparison.Ordinal) ? 4 : null };
        CausalLmModel Fresh()
        {
            var model = CausalLmMethodTests.Build("qwen2", method);
            model.train();
            return model;
        }
        using var temp = new TestModels.TempFolder();
        var alone = new Recorder();
        using (var model = Fresh())
            new Trainer<CausalLmExample>(new CausalLmObjective(model, 0), options, [alone]).Train(data, data[..4], new TrainingCheckpoint(temp.File("alone")));
        var first = new Recorder { InterruptAfter = 4 };
        var store = new TrainingCheckpoint(temp.File("resumed"));
        using (var model = Fresh())
            Assert.Throws<OperationCanceledException>(() => new Trainer<CausalLmExample>(new CausalLmObjective(model, 0), options, [first]).Train(data, data[..4], store));
        var second = new Recorder();
        using (var model = Fresh())
            new Trainer<CausalLmExample>(new CausalLmObjective(model, 0), options, [second]).Train(data, data[..4], store, resume: true);

        Assert.Equal(10, alone.Losses.Count);
        var combined = first.Losses.Concat(second.Losses).ToList();
        Assert.Equal(alone.Losses.Select(l => l.Step), combined.Select(l => l.Step));
        Tolerances.AssertClose(alone.Losses.Select(l => l.Loss).ToArray(), combined.Select(l => l.Loss).ToArray(), Tolerances.Rounding, "losses by step");
    }

    sealed class Recorder : ITrainerCallback
    {
        public List<(long Step, double Loss)> Losses { get; } = [];
        public long? InterruptAfter { get; init; }
        public void OnStep(StepInfo step) => Losses.Add((step.Step, step.Loss));
        public void OnCheckpoint(TrainerState state)
        {
            if (state.GlobalStep == InterruptAfter) throw new OperationCanceledException("simulated kill");
        }
    }
}
