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
    public void Hidden_states_match_onnx_runtime_within_1e_4(string name)
    {
        var builtIn = BuiltInModels.Find(name)!;
        using var encoder = PretrainedEncoder.Load(name);
        var tokenizer = BertTextTokenizer.FromBuiltIn(builtIn);
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
        double maxDiff = 0;
        for (int b = 0; b < rows; b++)
            for (int t = 0; t < length; t++)
            {
                if (mask[b * length + t] == 0) continue; // padding positions are undefined in both
                for (int h = 0; h < hidden; h++)
                {
                    int i = (b * length + t) * hidden + h;
                    maxDiff = Math.Max(maxDiff, Math.Abs(ours[i] - reference[i]));
                }
            }
        log.WriteLine($"{name}: max |difference| over real tokens {maxDiff:E2}");
        Assert.True(maxDiff <= 1e-4, $"{name}: max |difference| {maxDiff:E2}");
        Assert.True(encoded.Select(e => e.Length).Distinct().Count() > 1, "the batch must contain padding");
    }
}
