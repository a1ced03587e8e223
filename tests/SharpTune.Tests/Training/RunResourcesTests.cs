using SharpTune.Models.Memory;
using SharpTune.Peft;
using SharpTune.Tests.Models.Memory;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

public class RunResourcesTests
{
    static readonly string[] AllProjections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>
    /// docs/decoders.md "Memory when fine-tuning": peak resident of a step of a Qwen2.5-0.5B-shaped model at 4 x 512 tokens,
    /// each configuration in its own process (bench decoder-memory). The estimate stays within 6 % of each.
    /// </summary>
    [Theory]
    [InlineData("lora", true, true, false, 3305)]
    [InlineData("prefix-like full logits", true, true, true, 9163)]
    [InlineData("lora", true, false, false, 8025)]
    [InlineData("lora", false, false, false, 9745)]
    [InlineData("full", false, false, false, 17218)]
    public void A_training_step_is_estimated_within_6_percent_of_the_measured_peak(string method, bool bf16Base, bool checkpointing, bool fullLogits, int measuredMb)
    {
        var shape = MemoryEstimatorTests.Qwen05B();
        long trainable = method == "full" ? MemoryEstimator.ParameterCount(shape)
            : RunResources.TrainableParameters(shape, PeftRegistry.Get("lora"), null, new PeftSettings { LoraTargets = AllProjections });
        var dtype = bf16Base ? ScalarType.BFloat16 : ScalarType.Float32;
        var load = new TrainingLoad(trainable, TrainableAreExtra: method != "full", OptimizerStates: 2, Batch: 4, Length: 512,
            checkpointing, ChunkedLoss: !fullLogits, BaseTrains: method == "full");
        var estimate = MemoryEstimator.Training(shape, MemoryEstimator.WeightBytes(shape, dtype), dtype, load);
        double ratio = estimate.Total / (measuredMb * 1e6);
        Assert.True(Math.Abs(ratio - 1) < 0.06, $"estimated {estimate}, measured {measuredMb} MB: {ratio:F3}");
    }

    [Fact]
    public void LoRA_on_every_projection_trains_what_PEFT_counts()
    {
        // r (in + out) per wrapped Linear: 24 layers x 183,296 at Qwen2.5-0.5B's shapes.
        var shape = MemoryEstimatorTests.Qwen05B();
        Assert.Equal(24L * 183_296, RunResources.TrainableParameters(shape, PeftRegistry.Get("lora"), null, new PeftSettings { LoraTargets = AllProjections }));
        // The family's default targets (q_proj, v_proj).
        Assert.Equal(24L * 8 * (896 + 896 + 896 + 128), RunResources.TrainableParameters(shape, PeftRegistry.Get("lora"), null, new PeftSettings()));
    }

    /// <summary>
    /// Each method counts from the shape what it trains once built (the memory and disk checks run on the count before a
    /// weight is read), exactly, for every method and its encoder.
    /// </summary>
    [Theory]
    [InlineData("lora", "llama", 0.0)]
    [InlineData("lora", "gpt2", 0.0)]
    [InlineData("ia3", "qwen2", 0.0)]
    [InlineData("bitfit", "qwen2", 0.0)]
    [InlineData("prompt", "llama", 0.0)]
    [InlineData("ptuning-v2", "llama", 0.0)]
    [InlineData("ptuning", "llama", 0.0)]
    [InlineData("ptuning", "qwen2", 0.0, "lstm")]
    [InlineData("prefix", "gpt2", 0.0)]
    [InlineData("prefix", "llama", 0.0)]
    [InlineData("bitfit", "gpt2", 0.0)]
    public void A_methods_count_from_the_shape_is_what_the_built_model_trains(string name, string family, double tolerance, string encoder = "mlp")
    {
        var config = SharpTune.Tests.Models.Decoders.TinyDecoders.Config(family);
        var family_ = SharpTune.Models.Decoders.DecoderFamilies.ForConfig(config, "config");
        var shape = family_.ParseConfig(config, "config");
        var method = PeftRegistry.Get(name);
        var settings = new PeftSettings { VirtualTokens = 5, EncoderType = encoder };
        method.Validate(settings, shape);
        using var decoder = SharpTune.Models.Decoders.PretrainedDecoder.Create(config, linears: method.Linears(settings, shape, SharpTune.Models.Decoders.Common.DecoderLinears.Plain));
        using var model = new SharpTune.Heads.CausalLmModel(decoder, method.CreatePromptEncoder(settings, shape, decoder.WordEmbeddings));
        method.Freeze(model, settings);
        long built = model.parameters().Where(p => p.requires_grad).Sum(p => p.numel());
        long counted = RunResources.TrainableParameters(shape, method, null, settings);
        Assert.True(Math.Abs(counted - built) <= tolerance * built, $"{name} on {family}: counted {counted:N0}, the built model trains {built:N0}");
    }

    [Fact]
    public void A_run_that_would_not_fit_is_refused_naming_what_would_make_it_fit()
    {
        var shape = MemoryEstimatorTests.Qwen05B();
        var options = new FineTuneOptions { Task = "causal-lm", Method = "full", Train = "x.jsonl", Training = new TrainingOptions { BatchSize = 4 } };
        var lines = new List<string>();
        var exception = Assert.Throws<NotEnoughMemoryException>(() => RunResources.Check(options, shape,
            dtype => MemoryEstimator.WeightBytes(shape, dtype), ScalarType.Float32, null, FreezePolicy.Full, 512, writes: false, lines.Add,
            new MemoryAvailability(8_000_000_000, "test")));
        foreach (string remedy in new[] { "--gradient-checkpointing", "--batch-size 2", "--max-length 256", "--method lora --base-dtype bf16" })
            Assert.Contains(remedy, exception.Message);
        Assert.Contains("8.00 GB available", exception.Message);
        Assert.Empty(lines);
    }

    [Fact]
    public void The_disk_a_run_needs_counts_checkpoints_and_saved_models()
    {
        var shape = MemoryEstimatorTests.Qwen05B();
        var options = new FineTuneOptions { Task = "causal-lm", Method = "full", Train = "x.jsonl" };
        long parameters = MemoryEstimator.ParameterCount(shape);
        var (fresh, what) = RunResources.DiskNeeded(options, shape, null, FreezePolicy.Full);
        Assert.Equal(2 * (parameters * 12 + parameters * 4), fresh);   // fp32 weights + AdamW's two moments, and the saved model: twice each
        Assert.Contains("optimizer", what);
        var (resumed, _) = RunResources.DiskNeeded(options with { Resume = true }, shape, null, FreezePolicy.Full);
        Assert.Equal(fresh / 2, resumed);
    }
}
