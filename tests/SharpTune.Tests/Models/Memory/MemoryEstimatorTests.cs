using SharpTune.Models.Decoders.Gguf;
using System.Text.Json.Nodes;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders;
using SharpTune.Models.Memory;
using SharpTune.Tests.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Memory;

public class MemoryEstimatorTests
{
    [Theory]
    [InlineData("llama", false, false)]
    [InlineData("llama", false, true)]
    [InlineData("qwen2", true, true)]
    [InlineData("gpt2", false, true)]
    public void Parameters_and_weights_counted_from_the_header_equal_the_loaded_model(string arch, bool bias, bool tied)
    {
        using var temp = new TestModels.TempFolder();
        var sizes = TinyDecoderSizes.Odd;
        string path = temp.File($"{arch}.gguf");
        if (arch == "gpt2") GgufTestModels.WriteGpt2(path, sizes, GgufTestModels.HfGpt2(sizes), w => GgufTestModels.AddVocabulary(w, sizes.Vocab));
        else GgufTestModels.WriteLlama(path, arch, sizes, GgufTestModels.HfLlama(sizes, bias, tied), GgufTensorType.F16);
        using var lm = LanguageModel.Load(path);
        long loaded = lm.Model.Module.parameters().Sum(p => p.numel());
        var shape = LanguageModel.ReadConfig(path);

        Assert.Equal(loaded, MemoryEstimator.ParameterCount(shape));
        var map = GgufModelMap.Open(path);
        Assert.Equal(loaded * 4, MemoryEstimator.WeightBytes(map, ScalarType.Float32));
        Assert.Equal(loaded * 2, MemoryEstimator.WeightBytes(map, ScalarType.BFloat16));
        Assert.Equal(loaded * 4, MemoryEstimator.WeightBytes(path, shape, ScalarType.Float32));
        // The stored seam counts the file's own bytes: F16 matrices, F32 vectors.
        long stored = MemoryEstimator.WeightBytes(map, MemoryEstimator.StoredBytes);
        Assert.Equal(map.Tensors.Sum(m => map.File.GetTensor(m.GgufName).ByteSize), stored);
        if (arch != "gpt2") Assert.True(stored < loaded * 4 && stored > loaded * 2, $"{stored} bytes stored for {loaded} parameters");
    }

    /// <summary>Qwen2.5-0.5B's config: docs/decoders.md counts 494,032,768 parameters.</summary>
    internal static SharpTune.Models.Decoders.Common.IDecoderConfig Qwen05B()
    {
        var json = new JsonObject
        {
            ["model_type"] = "qwen2", ["hidden_size"] = 896, ["intermediate_size"] = 4864, ["num_hidden_layers"] = 24,
            ["num_attention_heads"] = 14, ["num_key_value_heads"] = 2, ["vocab_size"] = 151936, ["max_position_embeddings"] = 32768,
            ["tie_word_embeddings"] = true, ["rope_theta"] = 1000000.0, ["rms_norm_eps"] = 1e-6,
        };
        return DecoderFamilies.ForConfig(json, "qwen2.5-0.5b").ParseConfig(json, "qwen2.5-0.5b");
    }

    [Fact]
    public void A_Qwen2_5_7B_generating_in_bf16_is_estimated_near_its_measured_15_3_GiB_and_fp32_past_24_GiB()
    {
        // The measurement: a Qwen2.5-7B-shaped Q4_0 GGUF grew past 24 GiB in fp32 and was killed; bf16 peaked at 15.3 GiB.
        var json = new JsonObject
        {
            ["model_type"] = "qwen2", ["hidden_size"] = 3584, ["intermediate_size"] = 18944, ["num_hidden_layers"] = 28,
            ["num_attention_heads"] = 28, ["num_key_value_heads"] = 4, ["vocab_size"] = 152064, ["max_position_embeddings"] = 32768,
            ["tie_word_embeddings"] = false,
        };
        var shape = DecoderFamilies.ForConfig(json, "qwen2.5-7b").ParseConfig(json, "qwen2.5-7b");
        Assert.Equal(7_615_616_512, MemoryEstimator.ParameterCount(shape));
        var bf16 = MemoryEstimator.Inference(shape, MemoryEstimator.WeightBytes(shape, ScalarType.BFloat16), ScalarType.BFloat16, 1, 512 + 128);
        double measured = 15.3 * (1L << 30);
        Assert.True(Math.Abs(bf16.Total / measured - 1) < 0.06, $"{bf16}: {bf16.Total / measured:F3} of the measured peak");
        var fp32 = MemoryEstimator.Inference(shape, MemoryEstimator.WeightBytes(shape, ScalarType.Float32), ScalarType.Float32, 1, 512 + 128);
        Assert.True(fp32.Total > 24L << 30, fp32.ToString());
    }

    [Fact]
    public void Qwen2_5_0_5B_has_its_published_parameter_count() =>
        Assert.Equal(494_032_768, MemoryEstimator.ParameterCount(Qwen05B()));

    [Fact]
    public void Loading_is_estimated_within_what_decoder_load_measured()
    {
        // docs/decoders.md "Memory when loading": 1.18x to 1.22x of the 988 MB bf16 weights, 1.09x to 1.11x of fp32's 1,976 MB, with the runtime.
        var shape = Qwen05B();
        foreach (var (dtype, low, high) in new[] { (ScalarType.BFloat16, 1.18, 1.22), (ScalarType.Float32, 1.09, 1.11) })
        {
            long weights = MemoryEstimator.WeightBytes(shape, dtype);
            var estimate = MemoryEstimator.Inference(shape, weights, dtype, 1, 1);
            double ratio = (double)estimate.Total / weights;
            Assert.True(ratio > low * 0.94 && ratio < high * 1.06, $"{dtype}: estimated {ratio:F3}x the weights, measured {low}x to {high}x");
        }
    }

    [Fact]
    public void A_7B_Q4_0_header_needs_more_than_24_GiB_in_fp32_and_fits_in_bf16()
    {
        using var temp = new TestModels.TempFolder();
        string path = BigGguf.Write(temp);
        Assert.True(new FileInfo(path).Length > 3_500_000_000);
        var shape = LanguageModel.ReadConfig(path);
        Assert.Equal(BigGguf.Parameters, MemoryEstimator.ParameterCount(shape));
        var map = GgufModelMap.Open(path);
        var fp32 = MemoryEstimator.Inference(shape, MemoryEstimator.WeightBytes(map, ScalarType.Float32), ScalarType.Float32, 1, 512);
        var bf16 = MemoryEstimator.Inference(shape, MemoryEstimator.WeightBytes(map, ScalarType.BFloat16), ScalarType.BFloat16, 1, 512);
        Assert.Equal(BigGguf.Parameters * 4, fp32.Weights);
        Assert.True(fp32.Total > 24L << 30, fp32.ToString());
        Assert.True(bf16.Total < 16L << 30 && bf16.Total > 13L << 30, bf16.ToString());
        Assert.True(MemoryEstimator.WeightBytes(map, MemoryEstimator.StoredBytes) < 4_000_000_000);

        var refused = Assert.Throws<NotEnoughMemoryException>(() =>
            fp32.EnsureFits(new MemoryAvailability(24L << 30, "test"), "generate", ["--dtype bf16"]));
        Assert.Contains("--dtype bf16", refused.Message);
        Assert.Contains("25.8 GB available (test)", refused.Message);
        bf16.EnsureFits(new MemoryAvailability(24L << 30, "test"), "generate", []);
    }
}
