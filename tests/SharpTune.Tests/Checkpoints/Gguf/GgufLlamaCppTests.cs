using SharpTune.Models.Decoders.Gguf;
using System.Text;
using LLama.Native;
using SharpTune.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Checkpoints.Gguf;

/// <summary>Our dequantization against llama.cpp's own quantizer and dequantizer.</summary>
public class GgufLlamaCppTests
{
    public static TheoryData<GgufTensorType> QuantizedTypes =>
        [GgufTensorType.Q8_0, GgufTensorType.Q4_0, GgufTensorType.Q4_1, GgufTensorType.Q5_0, GgufTensorType.Q5_1,
         GgufTensorType.Q4_K, GgufTensorType.Q5_K, GgufTensorType.Q6_K];

    [Theory]
    [MemberData(nameof(QuantizedTypes))]
    public void Blocks_from_ggml_decode_exactly_as_ggml_decodes_them(GgufTensorType type)
    {
        var random = new Random(17);
        const int rows = 6, perRow = 512;
        // Gaussian-ish values with a few outliers and a zero row, so scales and mins vary widely.
        var values = Enumerable.Range(0, rows * perRow).Select(i =>
            i / perRow == 2 ? 0f : (float)((random.NextDouble() - 0.5) * (i % 97 == 0 ? 40 : 3) + (i / perRow == 4 ? 5 : 0))).ToArray();
        byte[] blocks = GgmlReference.Quantize(type, values, rows, perRow);
        float[] expected = GgmlReference.Dequantize(type, blocks);

        using var temp = new TestModels.TempFolder();
        string path = temp.File("q.gguf");
        new GgufWriter().AddRawTensor("w", [rows, perRow], type, blocks).Save(path);
        var actual = GgufFile.Open(path).ReadTensor("w");
        Assert.Equal([rows, perRow], actual.shape);
        float[] ours = actual.data<float>().ToArray();
        for (int i = 0; i < ours.Length; i++)
            Assert.True(Math.Abs(ours[i] - expected[i]) <= 1e-6f * Math.Max(1, Math.Abs(expected[i])), $"{type} element {i}: {ours[i]} vs ggml {expected[i]}");
    }

    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, new[] { GgufTensorType.Q8_0 }, new[] { GgufTensorType.Q8_0 })]
    [InlineData(LLamaFtype.MOSTLY_Q4_0, new[] { GgufTensorType.Q4_0 }, new[] { GgufTensorType.Q4_0, GgufTensorType.Q6_K, GgufTensorType.Q8_0 })]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, new[] { GgufTensorType.Q4_K, GgufTensorType.Q6_K }, new[] { GgufTensorType.Q4_K, GgufTensorType.Q6_K })]
    [InlineData(LLamaFtype.MOSTLY_Q5_K_M, new[] { GgufTensorType.Q5_K, GgufTensorType.Q6_K }, new[] { GgufTensorType.Q5_K, GgufTensorType.Q6_K })]
    [InlineData(LLamaFtype.MOSTLY_Q6_K, new[] { GgufTensorType.Q6_K }, new[] { GgufTensorType.Q6_K })]
    public void Files_quantized_by_llama_cpp_read_back_close_to_the_original(LLamaFtype ftype, GgufTensorType[] required, GgufTensorType[] allowed)
    {
        using var temp = new TestModels.TempFolder();
        var s = TinyDecoderSizes.Quantizable;
        var hf = GgufTestModels.HfLlama(s, bias: false, tied: false);
        string source = temp.File("f32.gguf"), quantized = temp.File($"{ftype}.gguf");
        GgufTestModels.WriteLlama(source, "llama", s, hf);

        var log = new StringBuilder();
        NativeApi.llama_empty_call();
        NativeLogConfig.llama_log_set((level, message) => { lock (log) log.Append(message); });
        bool ok = LLama.LLamaQuantizer.Quantize(source, quantized, ftype, nthread: 2, allowRequantize: true, quantizeOutputTensor: true);
        NativeLogConfig.llama_log_set((_, _) => { });
        Assert.True(ok, $"llama.cpp refused to quantize:\n{log}");

        var original = GgufFile.Open(source);
        var file = GgufFile.Open(quantized);
        Assert.Equal(original.Tensors.Select(t => t.Name).Order(), file.Tensors.Select(t => t.Name).Order());
        var matrixTypes = file.Tensors.Where(t => t.Dims.Length == 2).Select(t => t.Type).ToHashSet();
        Assert.Subset(allowed.ToHashSet(), matrixTypes);
        Assert.Superset(required.ToHashSet(), matrixTypes);
        Assert.All(file.Tensors.Where(t => t.Dims.Length == 1), t => Assert.Equal(GgufTensorType.F32, t.Type));

        using var stream = File.OpenRead(quantized);
        foreach (var info in file.Tensors)
        {
            using var scope = NewDisposeScope();
            var ours = file.ReadTensor(info.Name);
            var before = original.ReadTensor(info.Name);
            Assert.Equal(before.shape, ours.shape);
            if (info.Type == GgufTensorType.F32) { Assert.True(ours.eq(before).all().item<bool>(), info.Name); continue; }

            // Exactly what ggml decodes from the same bytes ...
            var raw = new byte[info.ByteSize];
            stream.Position = file.DataStart + info.Offset;
            stream.ReadExactly(raw);
            var reference = tensor(GgmlReference.Dequantize(info.Type, raw)).reshape(info.Shape);
            Assert.True((ours - reference).abs().max().item<float>() <= 1e-5f * reference.abs().max().item<float>(), $"{info.Name} ({info.Type}) differs from ggml's decoding");
            // ... and within the type's quantization error of the original.
            double relativeRms = ((ours - before).square().mean().sqrt() / before.square().mean().sqrt()).item<float>();
            Assert.True(relativeRms < Tolerance(info.Type), $"{info.Name} ({info.Type}): relative RMS error {relativeRms:F4}");
        }

        // The whole chain: the quantized file mapped to Hugging Face keys recovers the HF rows (un-permuted q/k).
        var map = GgufModelMap.Create(file);
        foreach (var (key, value) in map.ReadTensors())
        {
            using var scope = NewDisposeScope();
            double relativeRms = ((value - hf[key]).square().mean().sqrt() / hf[key].square().mean().sqrt()).item<float>();
            Assert.True(relativeRms < 0.12, $"{key}: relative RMS error {relativeRms:F4} against the Hugging Face tensor");
        }
    }

    [Fact]
    public void Llama_cpp_loads_a_model_file_written_by_the_writer()
    {
        using var temp = new TestModels.TempFolder();
        var s = TinyDecoderSizes.Quantizable;
        string path = temp.File("tiny.gguf");
        GgufTestModels.WriteLlama(path, "llama", s, GgufTestModels.HfLlama(s, bias: false, tied: true), GgufTensorType.Q8_0);
        var log = new StringBuilder();
        NativeApi.llama_empty_call();
        NativeLogConfig.llama_log_set((level, message) => { lock (log) log.Append(message); });
        try
        {
            using var weights = LLama.LLamaWeights.LoadFromFile(new LLama.Common.ModelParams(path) { ContextSize = 64 });
            Assert.Equal(s.Vocab, weights.Vocab.Count);
            Assert.Equal(s.Positions, weights.ContextSize);
            Assert.Equal("llama", weights.Metadata["general.architecture"]);
            Assert.Equal(s.Hidden, weights.EmbeddingSize);
        }
        catch (Exception e) when (e is not Xunit.Sdk.XunitException)
        {
            Assert.Fail($"llama.cpp could not load the file: {e.Message}\n{log}");
        }
        finally
        {
            NativeLogConfig.llama_log_set((_, _) => { });
        }
    }

    /// <summary>Relative RMS error for Gaussian weights: about step/√12 of each type's grid, with headroom.</summary>
    static double Tolerance(GgufTensorType type) => type switch
    {
        GgufTensorType.Q8_0 => 0.01,
        GgufTensorType.Q6_K => 0.025,
        GgufTensorType.Q5_K => 0.05,
        GgufTensorType.Q4_K => 0.1,
        GgufTensorType.Q4_0 => 0.12,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };
}
