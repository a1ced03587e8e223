using System.Text.Json;
using SharpTune.Metrics;

namespace SharpTune.Tests.Metrics;

public sealed class TokenMetricsTests
{
    [Fact]
    public void Iob2_and_iob1_entities_follow_conlleval()
    {
        var entities = BioTags.Entities(["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "O"]);
        Assert.Equal(
            [new Entity("PER", 0, 2), new Entity("LOC", 3, 5), new Entity("LOC", 5, 6), new Entity("ORG", 6, 7)],
            entities);
    }

    [Fact]
    public void Bioes_and_io_tags_are_understood()
    {
        Assert.Equal(
            [new Entity("PER", 0, 1), new Entity("LOC", 1, 3), new Entity("LOC", 3, 4)],
            BioTags.Entities(["S-PER", "B-LOC", "E-LOC", "I-LOC", "O"]));
        Assert.Equal([new Entity("PER", 0, 2), new Entity("LOC", 3, 4)], BioTags.Entities(["PER", "PER", "O", "LOC"]));
        Assert.Empty(BioTags.Entities(["O", "O"]));
    }

    // Gold entities: PER, LOC | ORG (I- start), MISC | LOC, PER (I- of another type). Predicted: PER, ORG | ORG | LOC(2 words).
    static readonly string[][] Gold = [["B-PER", "I-PER", "O", "B-LOC"], ["I-ORG", "I-ORG", "O", "B-MISC"], ["B-LOC", "I-PER"]];
    static readonly string[][] Predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG", "O", "O"], ["B-LOC", "I-LOC"]];

    [Fact]
    public void Entity_scores_match_hand_computed_conlleval_values()
    {
        var report = TokenMetrics.Compute(Predicted, Gold);

        Assert.Equal((6, 4, 2), (report.GoldEntities, report.PredictedEntities, report.CorrectEntities));
        Assert.Equal(0.5, report.Precision, 12);
        Assert.Equal(1.0 / 3, report.Recall, 12);
        Assert.Equal(0.4, report.F1, 12);
        Assert.Equal(0.6, report.TokenAccuracy, 12); // 3/4 + 2/4 + 1/2 tokens right
        Assert.Equal((3, 10), (report.Sentences, report.Tokens));

        Assert.Equal(["LOC", "MISC", "ORG", "PER"], report.PerType.Select(t => t.Label));
        var byType = report.PerType.ToDictionary(t => t.Label);
        Assert.Equal((0.0, 0.0, 0.0), (byType["LOC"].Precision, byType["LOC"].Recall, byType["LOC"].F1));
        Assert.Equal((0, 1), (byType["MISC"].Predicted, byType["MISC"].Support));
        Assert.Equal((0.5, 1.0), (byType["ORG"].Precision, byType["ORG"].Recall));
        Assert.Equal(2.0 / 3, byType["ORG"].F1, 12);
        Assert.Equal((1.0, 0.5), (byType["PER"].Precision, byType["PER"].Recall));

        using var json = JsonDocument.Parse(report.ToJson());
        Assert.Equal(0.4, json.RootElement.GetProperty("f1").GetDouble(), 12);
        Assert.Equal("MISC", json.RootElement.GetProperty("per_type")[1].GetProperty("label").GetString());
        Assert.Contains("entity F1 0.4000", report.ToTable());
    }

    [Fact]
    public void Id_overload_drops_ignored_positions_first()
    {
        string[] names = ["O", "B-PER", "I-PER"];
        int[][] gold = [[-100, 1, 2, 0, -100]];
        int[][] predicted = [[0, 1, 2, 1, 2]];

        var report = TokenMetrics.Compute(predicted, gold, names);

        // Left: gold B-PER I-PER O, predicted B-PER I-PER B-PER.
        Assert.Equal((1, 2, 1), (report.GoldEntities, report.PredictedEntities, report.CorrectEntities));
        Assert.Equal(3, report.Tokens);
        Assert.Equal(2.0 / 3, report.TokenAccuracy, 12);
        Assert.Equal(2.0 / 3, TokenMetrics.TokenAccuracy(predicted, gold), 12);
    }

    [Fact]
    public void No_entities_at_all_scores_zero_not_nan()
    {
        var report = TokenMetrics.Compute([["O", "O"]], [["O", "O"]]);
        Assert.Equal((0.0, 0.0, 0.0, 1.0), (report.Precision, report.Recall, report.F1, report.TokenAccuracy));
        JsonDocument.Parse(report.ToJson()).Dispose();
    }

    [Fact]
    public void Mismatched_lengths_name_the_sentence()
    {
        Assert.Contains("sentence 0", Assert.Throws<ArgumentException>(() => TokenMetrics.Compute([["O"]], [["O", "O"]])).Message);
        Assert.Contains("gold id 7", Assert.Throws<ArgumentException>(() => TokenMetrics.Compute([[0]], [[7]], ["O"])).Message);
    }
}
