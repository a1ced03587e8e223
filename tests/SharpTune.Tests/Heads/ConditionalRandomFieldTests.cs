using SharpTune.Heads;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Heads;

public sealed class ConditionalRandomFieldTests
{
    const int K = 3, T = 4, B = 3;
    static readonly long[] Lengths = [4, 2, 1];

    /// <summary>A CRF with random float64 parameters, emissions (B, T, K), tags with -100 padding, and a left-aligned mask.</summary>
    static (ConditionalRandomField Crf, Tensor Emissions, Tensor Tags, Tensor Mask) Example(int seed)
    {
        manual_seed(seed);
        var crf = new ConditionalRandomField(K);
        crf.to(ScalarType.Float64);
        Assert.Equal(ScalarType.Float64, crf.transitions.dtype);
        using (no_grad())
        {
            // Wider than the init range so the exactness checks see real structure.
            crf.transitions.copy_(randn(K, K, ScalarType.Float64));
            crf.start_transitions.copy_(randn(K, ScalarType.Float64));
            crf.end_transitions.copy_(randn(K, ScalarType.Float64));
        }
        var emissions = randn(B, T, K, ScalarType.Float64);
        var mask = arange(T).unsqueeze(0).lt(tensor(Lengths).unsqueeze(1));   // (B, T) bool
        var tags = randint(0, K, [B, T]).masked_fill(mask.logical_not(), -100);
        return (crf, emissions, tags, mask);
    }

    static double[] Read(Tensor t) => t.to(ScalarType.Float64).cpu().data<double>().ToArray();

    /// <summary>Score of one path of length path.Length under the CRF, in doubles.</summary>
    static double PathScore(ConditionalRandomField crf, double[] emissions, int[] path)
    {
        var trans = Read(crf.transitions);
        var start = Read(crf.start_transitions);
        var end = Read(crf.end_transitions);
        var score = start[path[0]] + end[path[^1]];
        for (var t = 0; t < path.Length; t++)
        {
            score += emissions[t * K + path[t]];
            if (t > 0) score += trans[path[t - 1] * K + path[t]];
        }
        return score;
    }

    /// <summary>Every one of the K^length paths.</summary>
    static IEnumerable<int[]> AllPaths(int length)
    {
        var count = (int)Math.Pow(K, length);
        for (var code = 0; code < count; code++)
        {
            var path = new int[length];
            for (int t = 0, rest = code; t < length; t++, rest /= K) path[t] = rest % K;
            yield return path;
        }
    }

    /// <summary>Brute force for sequence b: log Z, gold score, and the best path.</summary>
    static (double LogZ, double Gold, int[] Best) BruteForce(ConditionalRandomField crf, Tensor emissions, Tensor tags, int b)
    {
        var length = (int)Lengths[b];
        var em = Read(emissions[b]);
        var scored = AllPaths(length).Select(p => (Path: p, Score: PathScore(crf, em, p))).ToList();
        var max = scored.Max(s => s.Score);
        var logZ = max + Math.Log(scored.Sum(s => Math.Exp(s.Score - max)));
        var gold = tags[b].data<long>().Take(length).Select(x => (int)x).ToArray();
        return (logZ, PathScore(crf, em, gold), scored.MaxBy(s => s.Score).Path);
    }

    [Fact]
    public void Crf_Parameters_AreNamedLikePytorchWithShapesAndInitRange()
    {
        var crf = new ConditionalRandomField(5);
        var shapes = crf.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        Assert.Equal(["end_transitions", "start_transitions", "transitions"], shapes.Keys.Order());
        Assert.Equal([5L, 5L], shapes["transitions"]);
        Assert.Equal([5L], shapes["start_transitions"]);
        Assert.Equal([5L], shapes["end_transitions"]);
        foreach (var (_, p) in crf.named_parameters())
            Assert.All(Read(p), v => Assert.InRange(v, -0.1, 0.1));

        var keys = new TaggerHead(crf).state_dict().Keys.Order();
        Assert.Equal(["crf.end_transitions", "crf.start_transitions", "crf.transitions"], keys);
    }

    /// <summary>How a token-classification head holds its CRF: as a field named <c>crf</c>.</summary>
    sealed class TaggerHead : nn.Module
    {
#pragma warning disable IDE1006 // the field name is the state-dict key
        public readonly ConditionalRandomField crf;
#pragma warning restore IDE1006
        public TaggerHead(ConditionalRandomField crf) : base(nameof(TaggerHead))
        {
            this.crf = crf;
            RegisterComponents();
        }
    }

    [Fact]
    public void Crf_NegativeLogLikelihood_EqualsBruteForceEnumeration()
    {
        var (crf, emissions, tags, mask) = Example(1);
        var nll = Read(crf.NegativeLogLikelihood(emissions, tags, mask, "none"));
        Assert.Equal(B, nll.Length);
        var expected = Enumerable.Range(0, B).Select(b => BruteForce(crf, emissions, tags, b)).Select(r => r.LogZ - r.Gold).ToArray();
        // The forward algorithm's log-sum-exps in float64 against enumeration of every path in double.
        Tolerances.AssertClose(expected, nll, Tolerances.Float64, "per sequence");
        Tolerances.AssertClose(new[] { expected.Average() }, new[] { crf.NegativeLogLikelihood(emissions, tags, mask).item<double>() }, Tolerances.Float64, "mean");
        Tolerances.AssertClose(new[] { expected.Sum() }, new[] { crf.NegativeLogLikelihood(emissions, tags, mask, "sum").item<double>() }, Tolerances.Float64, "sum");
    }

    [Fact]
    public void Crf_Decode_EqualsBruteForceArgmax()
    {
        for (var seed = 2; seed < 6; seed++)
        {
            var (crf, emissions, tags, mask) = Example(seed);
            var paths = crf.Decode(emissions, mask);
            for (var b = 0; b < B; b++)
                Assert.Equal(BruteForce(crf, emissions, tags, b).Best.Select(x => (long)x), paths[b]);
        }
    }

    [Fact]
    public void Crf_Batch_EqualsEachSequenceAlone()
    {
        var (crf, emissions, tags, mask) = Example(7);
        var nll = Read(crf.NegativeLogLikelihood(emissions, tags, mask.to(ScalarType.Int32), "none"));
        var paths = crf.Decode(emissions, mask.to(ScalarType.Int64));
        for (var b = 0; b < B; b++)
        {
            var n = Lengths[b];
            var em = emissions[b..(b + 1), ..(int)n];                          // (1, n, K)
            var alone = ones(1, n, ScalarType.Bool);
            Assert.Equal(nll[b], crf.NegativeLogLikelihood(em, tags[b..(b + 1), ..(int)n], alone).item<double>(), 1e-9);
            Assert.Equal(paths[b], crf.Decode(em, alone)[0]);
        }
    }

    [Fact]
    public void Crf_PaddingTags_AreIgnored()
    {
        var (crf, emissions, tags, mask) = Example(8);
        var zeros = tags.masked_fill(mask.logical_not(), 0);
        var big = tags.masked_fill(mask.logical_not(), 1000);
        var expected = crf.NegativeLogLikelihood(emissions, zeros, mask, "sum").item<double>();
        Assert.Equal(expected, crf.NegativeLogLikelihood(emissions, tags, mask, "sum").item<double>(), 1e-12);
        Assert.Equal(expected, crf.NegativeLogLikelihood(emissions, big, mask, "sum").item<double>(), 1e-12);
    }

    [Fact]
    public void Crf_Backward_GivesGradientsToEveryParameterAndTheEmissions()
    {
        var (crf, emissions, tags, mask) = Example(9);
        emissions.requires_grad_(true);
        crf.NegativeLogLikelihood(emissions, tags, mask).backward();
        foreach (var p in new[] { crf.transitions, crf.start_transitions, crf.end_transitions, emissions })
        {
            Assert.NotNull(p.grad);
            Assert.True(p.grad!.abs().sum().item<double>() > 0);
        }
        // Padded positions must not influence the loss.
        Assert.Equal(0.0, emissions.grad![2, 1..].abs().sum().item<double>());
    }

    /// <summary>
    /// Features say only the first tag; the rest follows y_t = (y_0 + t) mod K, so decoding the gold
    /// tags needs learned transitions, not just emissions.
    /// </summary>
    [Fact]
    public void Crf_AdamSteps_LearnAToyProblem()
    {
        manual_seed(11);
        const int batch = 6, time = 5;
        long[] lengths = [5, 4, 3, 5, 2, 1];
        var first = arange(batch) % K;                                         // (B)
        var gold = (first.unsqueeze(1) + arange(time).unsqueeze(0)) % K;       // (B, T)
        var mask = arange(time).unsqueeze(0).lt(tensor(lengths).unsqueeze(1)); // (B, T)
        var features = zeros(batch, time, K);
        features[.., 0] = nn.functional.one_hot(first, K).to(ScalarType.Float32);
        var labels = gold.masked_fill(mask.logical_not(), -100);

        var linear = nn.Linear(K, K);
        var crf = new ConditionalRandomField(K);
        var optimizer = optim.Adam(linear.parameters().Concat(crf.parameters()), lr: 0.05);
        double Loss() => crf.NegativeLogLikelihood(linear.forward(features), labels, mask).item<float>();

        var before = Loss();
        for (var step = 0; step < 300; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            crf.NegativeLogLikelihood(linear.forward(features), labels, mask).backward();
            optimizer.step();
        }
        var after = Loss();
        Assert.True(after < 0.1 * before, $"NLL {before} -> {after}");

        var paths = crf.Decode(linear.forward(features).detach(), mask);
        for (var b = 0; b < batch; b++)
            Assert.Equal(gold[b, ..(int)lengths[b]].data<long>().ToArray(), paths[b]);
    }

    [Fact]
    public void Crf_Validation_NamesExpectedAndActualShapes()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ConditionalRandomField(0));
        var (crf, emissions, tags, mask) = Example(12);

        var e = Assert.Throws<ArgumentException>(() => crf.NegativeLogLikelihood(randn(B, T, 5, ScalarType.Float64), tags, mask));
        Assert.Contains("(B, T, K) with K = num_tags = 3, got (3, 4, 5)", e.Message);
        e = Assert.Throws<ArgumentException>(() => crf.Decode(randn(B, T, ScalarType.Float64), mask));
        Assert.Contains("got (3, 4)", e.Message);
        e = Assert.Throws<ArgumentException>(() => crf.NegativeLogLikelihood(emissions, tags[.., ..3], mask));
        Assert.Contains("tags must have shape (B, T) = (3, 4)", e.Message);
        Assert.Contains("got (3, 3)", e.Message);
        e = Assert.Throws<ArgumentException>(() => crf.Decode(emissions, mask[..2]));
        Assert.Contains("mask must have shape (B, T) = (3, 4)", e.Message);
        Assert.Contains("got (2, 4)", e.Message);

        var late = mask.clone();
        late[1, 0] = tensor(false);
        Assert.Contains("first time step", Assert.Throws<ArgumentException>(() => crf.Decode(emissions, late)).Message);
        var gap = mask.clone();
        gap[2, 3] = tensor(true);
        Assert.Contains("left-aligned", Assert.Throws<ArgumentException>(() => crf.Decode(emissions, gap)).Message);

        var outOfRange = tags.clone();
        outOfRange[0, 0] = tensor(3L);
        Assert.Contains("[0, 2]", Assert.Throws<ArgumentException>(() => crf.NegativeLogLikelihood(emissions, outOfRange, mask)).Message);
        Assert.Throws<ArgumentException>(() => crf.NegativeLogLikelihood(emissions, tags.to(ScalarType.Float32), mask));
        Assert.Throws<ArgumentException>(() => crf.NegativeLogLikelihood(emissions, tags, mask, "max"));
        Assert.Throws<ArgumentException>(() => crf.Decode(randn(B, 0, K), ones(B, 0)));
    }
}
