using SharpTune.Checkpoints;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Models.Bert;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Training;
using Xunit.Abstractions;
using static SharpTune.Tests.Peft.PeftTestModels;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Lora;

/// <summary>LoRA on the real built-in minilm (6 layers, hidden 384): the default settings train well under 1 %.</summary>
public class LoraPretrainedTests(ITestOutputHelper output)
{
    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Default_LoRA_on_minilm_trains_under_one_percent_and_starts_as_the_pretrained_model()
    {
        using var encoder = PretrainedEncoder.Load("minilm");
        var method = new LoraMethod();
        var settings = new PeftSettings();
        var bert = new BertModel(encoder.Config, encoder.Model.HasPooler, method.Linears(settings, encoder.Config));
        Assert.Empty(StateDictLoader.Load(bert, encoder.Model.state_dict(), "minilm", AdapterTensors.IsAdapterKey));
        using var model = new TaskModel(bert, new HeadOptions(TaskKind.SingleLabel, 2, UsePooler: encoder.Model.HasPooler));
        method.Freeze(model, settings);

        var summary = ParameterSummary.Of(model);
        output.WriteLine($"minilm + LoRA (r 8, query and value) + 2-class head: {summary}; base {encoder.ParameterCount:N0}");
        long lora = 6 * 2 * (8 * 384 + 384 * 8); // layers x targets x (A (8, 384) + B (384, 8)) = 73,728
        long head = 384 * 2 + 2;
        Assert.Equal(lora + head, summary.Trainable);
        Assert.Equal(encoder.ParameterCount + lora + head, summary.Total);
        Assert.True(summary.Fraction < 0.01, summary.ToString());

        bert.eval();
        using var ids = tensor(new long[] { 101, 7592, 2088, 2003, 2307, 102 }, [1, 6]);
        using var expected = encoder.Model.forward(ids);
        using var actual = bert.forward(ids);
        // B is zero: the same Linear kernels plus exactly zero.
        Tolerances.AssertClose(expected.LastHiddenState, actual.LastHiddenState, Tolerances.Exact, "untrained LoRA on minilm");
    }
}
