using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;
using Microsoft.ML.OnnxRuntime.Tensors;
using SharpTune.Models;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>SharpTune's BERT fed the built-in weights against ONNX Runtime running the same ONNX file.</summary>
public class PretrainedParityTests(ITestOutputHelper log)
{
    static readonly string[] Sentences =
    [
        "Hello, my dog is cute",
        "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
        "Naïve café owners don't like spam.",
        "Fine-tuning locally keeps private data on the machine.",
    ];

    [Theory]
    [InlineData("minilm")]
    [InlineData("arctic-xs")]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Hidden_states_match_onnx_runtime_through_different_kernels(string name)
    {
        var builtIn = BuiltInModels.Find(name)!;
        using var encoder = PretrainedEncoder.Load(name);
        var tokenizer = builtIn.CreateTokenizer();
        var encoded = Sentences.Select(s => tokenizer.Encode(s)).ToArray();
        using var batch = TokenBatch.Collate(encoded, tokenizer.PadId);
        int rows = batch.BatchSize, length = batch.SequenceLength;

        using var output = encoder.Model.forward(batch.InputIds, batch.AttentionMask, batch.TokenTypeIds);
        var ours = output.LastHiddenState.data<float>().ToArray(); // (B, T, H) row-major

        using var session = new InferenceSession(builtIn.ReadOnnx());
        var dims = new[] { rows, length };
        var feeds = new List<NamedOnnxValue>();
        foreach (var (input, tensor) in new[] { ("input_ids", batch.InputIds), ("attention_mask", batch.AttentionMask), ("token_type_ids", batch.TokenTypeIds) })
            if (session.InputMetadata.ContainsKey(input))
                feeds.Add(NamedOnnxValue.CreateFromTensor(input, new DenseTensor<long>(tensor.data<long>().ToArray(), dims)));
        using var results = session.Run(feeds);
        var reference = results.First(r => r.Name == "last_hidden_state").AsTensor<float>().ToArray();

        Assert.Equal(reference.Length, ours.Length);
        var mask = batch.AttentionMask.data<long>().ToArray();
        int hidden = encoder.Config.HiddenSize;
        var (expected, actual) = (new List<float>(), new List<float>());
        for (int b = 0; b < rows; b++)
            for (int t = 0; t < length; t++)
            {
                if (mask[b * length + t] == 0) continue; // padding positions are undefined in both
                for (int h = 0; h < hidden; h++)
                {
                    int i = (b * length + t) * hidden + h;
                    expected.Add(reference[i]);
                    actual.Add(ours[i]);
                }
            }
        double maxDiff = expected.Zip(actual).Max(p => Math.Abs(p.First - p.Second));
        log.WriteLine($"{name}: max |difference| over real tokens {maxDiff:E2}, scale {Tolerances.Scale(expected.Concat(actual)):F2}");
        // ONNX Runtime's kernels against libtorch's through six layers.
        Tolerances.AssertClose(expected.ToArray(), actual.ToArray(), Tolerances.DifferentKernelsThroughNetwork, $"{name}: hidden states of real tokens");
        Assert.True(encoded.Select(e => e.Length).Distinct().Count() > 1, "the batch must contain padding");
    }
}
