using System.Diagnostics;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Quantized;
using static TorchSharp.torch;

namespace SharpTune.Bench.Suites.Decoders;

/// <summary>Where one generated token's time goes, in milliseconds.</summary>
/// <param name="Forward">The model's Forward on one token with a filled cache (best of several).</param>
/// <param name="ForwardInARow">The mean of 16 such Forwards in a row, as generation runs them.</param>
/// <param name="Matmul">Every weight matrix (stored: on its blocks, as the layers compute) of the model times one activation row (the layers' projections and the head), run bare.</param>
/// <param name="Attention">Per layer: appending to the cache, repeating the key/value heads, scaled dot-product attention.</param>
/// <param name="MatrixVector">The same products as matrix-vector products (<c>mv</c>), the kernel a batch-1 step could use instead.</param>
/// <param name="WeightBytes">Bytes of the weight matrices read per token.</param>
public sealed record TokenProfile(double Forward, double ForwardInARow, double Matmul, double Attention, double MatrixVector, long WeightBytes)
{
    public double Rest => Math.Max(0, Forward - Matmul - Attention);

    /// <summary>GB/s the bare products read weights at.</summary>
    public double MatmulGigabytesPerSecond => WeightBytes / (Matmul / 1000) / 1e9;
}

/// <summary>
/// Profiles one generated token of a SharpTune decoder: its step (the step decoder's, or Forward where the model has
/// none) on one token after a prompt of
/// <c>cached</c> tokens, against the same work done piece by piece (bare matrix products of the model's own
/// weights, attention over a cache of the same length), each the best of several runs.
/// </summary>
public static class GenerationProfile
{
    public static TokenProfile Measure(ICausalLanguageModel model, int cached, int repeats)
    {
        var info = model.Info;
        // Stored weights (--dtype stored): the block matrices of the Linear layers and the head, timed through the
        // same operation the layers call; dense ones: the 2-D parameters (the word embeddings being the tied head).
        var stored = model.Module.modules().OfType<StoredLinear>().Select(l => l.Weight).ToList();
        if (model is ILanguageModelHead { StoredHead: { } storedHead }) stored.Add(storedHead);
        var weights = stored.Count > 0 ? new List<Tensor>() : model.Module.parameters().Where(p => p.dim() == 2).Cast<Tensor>().ToList();
        ScalarType dtype = stored.Count > 0 ? ScalarType.Float32 : weights[0].dtype;
        using var noGrad = no_grad();
        using var cache = model.NewCache();
        using (var scope = NewDisposeScope())
            model.Forward(randint(3, info.VocabSize, [1, cached], dtype: ScalarType.Int64), cache: cache);
        using var token = tensor(new long[] { 5 }, [1, 1]);
        // Generation decodes on the model's step decoder where it has one (TextGenerator.UseStepDecoder), else on Forward.
        using var promptMask = ones(1, cached, ScalarType.Int64);
        using var stepper = StepDecoder.Start(model, cache, promptMask, cached + 64);
        void Step()
        {
            using var scope = NewDisposeScope();
            if (stepper is not null) stepper.Step([5L]);
            else model.Forward(token, cache: cache);
        }
        double forward = Best(Step, repeats);
        // 16 steps in a row, as generation runs them: the mean step, against the best single one above.
        double forwardInARow = Best(() => { for (int i = 0; i < 16; i++) Step(); }, 2) / 16;

        // The same products bare: one activation row (the weights' dtype) times each weight matrix, the tied head included.
        var rows = stored.Count > 0 ? stored.Select(w => randn(1, w.Columns)).ToList() : weights.Select(w => randn(1, w.shape[1]).to(dtype)).ToList();
        double matmul = Best(() =>
        {
            using var scope = NewDisposeScope();
            for (int i = 0; i < stored.Count; i++) QuantizedOps.Linear(rows[i], stored[i], null, roundActivations: true);
            for (int i = 0; i < weights.Count; i++) nn.functional.linear(rows[i], weights[i]);
        }, repeats);

        var vectors = rows.Select(r => r.squeeze(0)).ToList();
        double matrixVector = stored.Count > 0 ? matmul : Best(() =>
        {
            using var scope = NewDisposeScope();
            for (int i = 0; i < weights.Count; i++) weights[i].mv(vectors[i]);
        }, repeats);

        // Attention of one query over the cache in every layer, as GroupedQueryAttention does it.
        long length = cache.Length;
        var keys = randn(1, info.KeyValueHeads, length, info.HeadDim).to(dtype);
        var values = randn(1, info.KeyValueHeads, length, info.HeadDim).to(dtype);
        var newKey = randn(1, info.KeyValueHeads, 1, info.HeadDim).to(dtype);
        var query = randn(1, info.Heads, 1, info.HeadDim).to(dtype);
        double attention = Best(() =>
        {
            using var scope = NewDisposeScope();
            for (int layer = 0; layer < info.Layers; layer++)
            {
                var k = cat([keys, newKey], 2);
                var v = cat([values, newKey], 2);
                nn.functional.scaled_dot_product_attention(query, GroupedQueryAttention.RepeatKeyValues(k, info.Heads),
                    GroupedQueryAttention.RepeatKeyValues(v, info.Heads));
            }
        }, repeats);
        long bytes = weights.Sum(w => w.numel() * w.element_size()) + stored.Sum(w => w.ByteSize);
        foreach (var t in rows.Concat(vectors)) t.Dispose();
        keys.Dispose(); values.Dispose(); newKey.Dispose(); query.Dispose();
        return new TokenProfile(forward, forwardInARow, matmul, attention, matrixVector, bytes);
    }

    static double Best(Action action, int repeats)
    {
        action();
        double best = double.MaxValue;
        for (int i = 0; i < repeats; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            best = Math.Min(best, clock.Elapsed.TotalMilliseconds);
        }
        return best;
    }
}
