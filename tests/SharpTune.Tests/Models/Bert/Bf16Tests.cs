using SharpTune.Models.Common;
using SharpTune.Heads;
using SharpTune.Models.Bert;
using SharpTune.Tests.Training;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Bert;

public class Bf16Tests
{
    static BertModel Bf16Copy(BertModel source)
    {
        var model = new BertModel(source.Config with { Bf16 = true }, source.HasPooler, LinearFactories.Bf16);
        SharpTune.Checkpoints.StateDictLoader.Load(model, source.state_dict(), "fp32 model");
        model.eval();
        return model;
    }

    [Fact]
    public void Mixed_precision_keeps_keys_and_fp32_master_weights_and_stays_close_to_fp32()
    {
        using var fp32 = TestModels.TinyModel(seed: 9);
        using var bf16 = Bf16Copy(fp32);
        Assert.Equal(fp32.state_dict().Keys, bf16.state_dict().Keys);
        Assert.All(bf16.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));

        using var ids = randint(1, 99, [3, 12], dtype: ScalarType.Int64);
        using var a = fp32.forward(ids);
        using var b = bf16.forward(ids);
        Assert.Equal(ScalarType.Float32, b.LastHiddenState.dtype);
        double diff = (a.LastHiddenState - b.LastHiddenState).abs().max().item<float>();
        Assert.True(diff is > 0 and < 0.1, $"bf16 differs from fp32 by {diff}"); // bf16 keeps 8 bits of mantissa
    }

    [Fact]
    public void Mixed_precision_training_learns_with_fp32_gradients()
    {
        var data = TrainerTests.ToyData(TaskKind.SingleLabel, 64, seed: 1);
        using var fp32 = TestModels.TinyModel(seed: 3);
        using var model = new TaskModel(Bf16Copy(fp32), new HeadOptions(TaskKind.SingleLabel, 2));
        double before = Evaluator.Run(model, data, 16, 0).Loss;
        var options = new TrainingOptions { Epochs = 8, BatchSize = 8, LearningRate = 5e-3, WarmupRatio = 0, Schedule = "constant", Seed = 3 };
        new Trainer(model, options, 0, (_, _) => new Dictionary<string, double>()).Train(data, null);
        double after = Evaluator.Run(model, data, 16, 0).Loss;
        Assert.True(after < before * 0.7, $"loss {before:F4} -> {after:F4}");
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
    }
}
