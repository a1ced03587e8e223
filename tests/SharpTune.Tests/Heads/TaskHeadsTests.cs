using SharpTune.Data;
using SharpTune.Heads;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Heads;

/// <summary>One head class per task kind, chosen once; heads made from options alone collate and score without parameters.</summary>
public class TaskHeadsTests
{
    sealed record Target(int ClassId = -1, int[]? ClassIds = null, float Value = 0, int[]? WordStarts = null, int[]? WordLabels = null) : ITaskTarget;

    [Fact]
    public void Each_kind_gets_its_own_head_class()
    {
        Assert.IsType<SequenceClassificationHead>(TaskHeads.Create(new HeadOptions(TaskKind.SingleLabel, 3)));
        Assert.IsType<MultiLabelClassificationHead>(TaskHeads.Create(new HeadOptions(TaskKind.MultiLabel, 3)));
        Assert.IsType<RegressionHead>(TaskHeads.Create(new HeadOptions(TaskKind.Regression, 1)));
        Assert.IsType<TokenClassificationHead>(TaskHeads.Create(new HeadOptions(TaskKind.Tokens, 3)));
        Assert.IsType<CrfTokenClassificationHead>(TaskHeads.Create(new HeadOptions(TaskKind.Tokens, 3, UseCrf: true)));
        Assert.Throws<ArgumentException>(() => TaskHeads.Create(new HeadOptions(TaskKind.Regression, 2)));
        using var crf = new ConditionalRandomField(3);
        Assert.Throws<ArgumentException>(() => TaskHeads.Create(new HeadOptions(TaskKind.Tokens, 3), crf));
    }

    [Fact]
    public void A_head_made_from_options_draws_nothing_and_collates_and_scores_but_has_no_crf_to_score_with()
    {
        manual_seed(3);
        using var before = rand(4);
        manual_seed(3);
        var head = TaskHeads.Create(new HeadOptions(TaskKind.Tokens, 3, UseCrf: true));
        using var after = rand(4);
        Assert.True(before.equal(after).all().item<bool>(), "making a head drew from torch's generator");

        var batch = new[] { new Target(WordStarts: [1, 2], WordLabels: [0, 2]), new Target(WordStarts: [1], WordLabels: [1]) };
        var targets = head.Collate(batch);
        Assert.Equal(new long[] { 0, 2, 1, -100 }, targets.Labels.flatten().data<long>().ToArray());
        Assert.Equal(new[] { true, true, true, false }, targets.WordMask!.flatten().data<bool>().ToArray());
        var (values, _) = head.Score(batch, [new Prediction([0, 1], [], null), new Prediction([1], [], null)], ["O", "B-X", "I-X"]);
        Assert.Equal(2.0 / 3, values["token_accuracy"], 6);
        Assert.Equal(LabelKind.SingleLabel, head.DataLabels);
        Assert.Equal("ForTokenClassification", head.ArchitectureSuffix);

        using var logits = zeros(2, 2, 3);
        using var inputs = new ModelInputs(zeros(2, 3, ScalarType.Int64), ones(2, 3, ScalarType.Int64), zeros(2, 3, ScalarType.Int64),
            targets.WordPositions, targets.WordMask);
        var error = Assert.Throws<InvalidOperationException>(() => head.Loss(logits, targets.Labels, inputs));
        Assert.Contains("without its CRF layer", error.Message);
    }

    [Fact]
    public void The_task_model_hands_its_crf_to_its_head()
    {
        using var model = new TaskModel(TestModels.TinyModel(seed: 13), new HeadOptions(TaskKind.Tokens, 3, UseCrf: true));
        Assert.IsType<CrfTokenClassificationHead>(model.TaskHead);
        Assert.NotNull(model.Crf);
        Assert.Contains("crf.transitions", model.state_dict().Keys);
        Assert.DoesNotContain(model.state_dict().Keys, k => k.Contains("head", StringComparison.Ordinal));
    }

    [Fact]
    public void A_heads_loss_weight_is_its_share_of_the_losss_average()
    {
        EncodedExample[] texts =
        [
            new([2, 5, 3], [0, 0, 0], "a", ClassId: 1), new([2, 5, 3], [0, 0, 0], "b", ClassId: 7), new([2, 3], [0, 0], "c", ClassIds: [0, 2]),
            new([2, 5, 3], [0, 0, 0], "d", Value: 0.5f),
        ];
        EncodedExample[] sentences =
        [
            new([2, 5, 6, 3], [0, 0, 0, 0], "e", WordStarts: [1, 2], WordLabels: [2, -100]),
            new([2, 5, 6, 3], [0, 0, 0, 0], "f", WordStarts: [1], WordLabels: [0, 1]), new([2, 3], [0, 0], "g", WordStarts: [1]),
        ];
        double[] Weights(HeadOptions options, EncodedExample[] data) => data.Select(TaskHeads.Create(options).LossWeight).ToArray();

        Assert.Equal([1, 1, 1, 1], Weights(new(TaskKind.SingleLabel, 3), texts));
        // cross_entropy with class weights averages over the batch's weights; no class, or one outside the weights, weighs nothing.
        Assert.Equal([2, 0, 0, 0], Weights(new(TaskKind.SingleLabel, 3, ClassWeights: [0.5f, 2f, 1f]), texts));
        Assert.Equal([1, 1, 1, 1], Weights(new(TaskKind.MultiLabel, 3), texts));
        Assert.Equal([1, 1, 1, 1], Weights(new(TaskKind.Regression, 1), texts));
        // Softmax over words averages over labelled words within the example's words; the CRF's likelihood over sentences.
        Assert.Equal([1, 1, 0], Weights(new(TaskKind.Tokens, 3), sentences));
        Assert.Equal([1, 1, 1], Weights(new(TaskKind.Tokens, 3, UseCrf: true), sentences));
    }
}
