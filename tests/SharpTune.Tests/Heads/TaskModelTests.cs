using SharpTune.Heads;
using static TorchSharp.torch;

namespace SharpTune.Tests.Heads;

public class TaskModelTests
{
    static Tensor Logits(TaskModel model, long[] ids, long[] mask, int batch)
    {
        int length = ids.Length / batch;
        using var inputIds = tensor(ids).view(batch, length);
        using var attention = tensor(mask).view(batch, length);
        using var types = zeros_like(inputIds);
        return model.forward(new ModelInputs(inputIds, attention, types));
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Every_pooling_gives_the_same_logits_alone_and_padded_in_a_batch(bool pooler, bool mean)
    {
        using var model = new TaskModel(TestModels.TinyModel(seed: 13), new HeadOptions(TaskKind.SingleLabel, 3, UsePooler: pooler, MeanPooling: mean));
        model.eval();
        using var alone = Logits(model, [2, 17, 45, 8, 3], [1, 1, 1, 1, 1], 1);
        using var batch = Logits(model, [2, 17, 45, 8, 3, 0, 0, 2, 5, 6, 7, 8, 9, 3], [1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1], 2);
        Tolerances.AssertClose(alone[0], batch[0], Tolerances.DifferentKernelsThroughNetwork, "padded"); // other shapes, other blockings
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Mean_pooling_averages_the_real_tokens_only()
    {
        using var model = new TaskModel(TestModels.TinyModel(seed: 13), new HeadOptions(TaskKind.SingleLabel, 3, MeanPooling: true));
        model.eval();
        using var ids = tensor(new long[] { 2, 17, 45, 3, 0 }).view(1, 5);
        using var mask = tensor(new long[] { 1, 1, 1, 1, 0 }).view(1, 5);
        using var hidden = model.Encoder.forward(ids, mask);
        using var expected = model.Classifier.forward(hidden.LastHiddenState[0, ..4].mean([0]).unsqueeze(0));
        using var actual = model.forward(new ModelInputs(ids, mask, zeros_like(ids)));
        // The same encoder forward; mean over four rows against the model's masked sum / count.
        Tolerances.AssertClose(expected, actual, Tolerances.DifferentKernels, "mean pooling");
    }
}
