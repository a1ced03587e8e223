using SharpTune.Data;

namespace SharpTune.Tests.Data;

public sealed class DataSplitTests
{
    static readonly List<TextExample> Examples =
        [.. Enumerable.Range(0, 30).Select(i => new TextExample($"t{i}", null, i < 20 ? "a" : "b", $"f:{i + 1}"))];

    [Fact]
    public void Same_seed_same_split_and_halves_partition_the_data_in_order()
    {
        var first = DataSplit.TrainValidation(Examples, 0.2, seed: 7);
        var again = DataSplit.TrainValidation(Examples, 0.2, seed: 7);
        var other = DataSplit.TrainValidation(Examples, 0.2, seed: 8);

        Assert.Equal(first.Validation, again.Validation);
        Assert.NotEqual(first.Validation, other.Validation);
        Assert.Equal(6, first.Validation.Count);
        Assert.Equal(24, first.Train.Count);
        Assert.Equal(Examples.OrderBy(e => e.Text), first.Train.Concat(first.Validation).OrderBy(e => e.Text));
        // Original order is kept inside each half.
        Assert.Equal(first.Train.OrderBy(e => Examples.IndexOf(e)), first.Train);
    }

    [Fact]
    public void Pinned_split_does_not_change_between_versions()
    {
        var split = DataSplit.TrainValidation(Examples.Take(10).ToList(), 0.3, seed: 42);
        Assert.Equal(["t0", "t5", "t9"], split.Validation.Select(e => e.Text));
    }

    [Fact]
    public void Stratified_split_keeps_each_label_share()
    {
        var split = DataSplit.TrainValidation(Examples, 0.2, seed: 1, e => e.Label);
        Assert.Equal(4, split.Validation.Count(e => e.Label == "a"));
        Assert.Equal(2, split.Validation.Count(e => e.Label == "b"));
    }

    [Fact]
    public void Stratified_split_keeps_a_single_example_label_in_training()
    {
        List<TextExample> data = [.. Examples.Take(9), new TextExample("rare", null, "z", "f:99")];
        var split = DataSplit.TrainValidation(data, 0.5, seed: 3, e => e.Label);
        Assert.Contains(split.Train, e => e.Label == "z");
        Assert.Equal(5, split.Validation.Count);
    }

    [Fact]
    public void Stratifying_by_unique_keys_is_an_error_not_an_empty_validation_set() =>
        Assert.Throws<ArgumentException>(() => DataSplit.TrainValidation(Examples, 0.2, seed: 0, e => e.Text));

    [Fact]
    public void Always_leaves_at_least_one_example_on_each_side()
    {
        var tiny = Examples.Take(3).ToList();
        Assert.Single(DataSplit.TrainValidation(tiny, 0.01, seed: 0).Validation);
        Assert.Single(DataSplit.TrainValidation(tiny, 0.99, seed: 0).Train);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(double.NaN)]
    public void Fraction_must_be_strictly_between_zero_and_one(double fraction) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => DataSplit.TrainValidation(Examples, fraction, seed: 0));

    [Fact]
    public void Needs_two_examples() =>
        Assert.Throws<ArgumentException>(() => DataSplit.TrainValidation(Examples.Take(1).ToList(), 0.5, seed: 0));
}
