using System.Text.Json.Nodes;
using SharpTune.Checkpoints;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Training;
using static SharpTune.Tests.Peft.PeftTestModels;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Lora;

/// <summary>
/// What each LoRA variant computes, against its formula written out here (the method matrix covers what every variant
/// shares: freezing, the untrained identity, save/load, merged export).
/// </summary>
public class LoraVariantTests
{
    static readonly LoraMethod Method = new();

    /// <summary>A layer over a dense (out 7, in 5) weight, initialised from it, its trainable tensors moved off their start.</summary>
    static LoraLinear Layer(LoraOptions options, bool transposed = false, int seed = 1)
    {
        manual_seed(seed);
        var layer = new LoraLinear(new LinearSite("x", 5, 7, Transposed: transposed), options);
        layer.InitializeFromBase();
        using var noGrad = no_grad();
        layer.LoraB.normal_(0, 0.5);
        layer.LoraA.add_(randn_like(layer.LoraA) * 0.3);
        layer.Magnitude?.add_(rand_like(layer.Magnitude));
        return layer;
    }

    static Tensor Param(nn.Module module, string name) => module.named_parameters().Single(p => p.name == name).parameter;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Dora_is_the_magnitude_times_the_normalised_direction_with_the_norm_detached(bool transposed)
    {
        using var layer = Layer(new LoraOptions(3, 6, 0, ["x"], "none", UseDora: true), transposed);
        var w = transposed ? Param(layer, "weight").t() : Param(layer, "weight");                       // (out, in)
        var (a, b, m, bias) = (layer.LoraA, layer.LoraB, layer.Magnitude!, Param(layer, "bias"));
        using var x = randn(2, 4, 5);
        using var y = layer.forward(x);
        // PEFT's DoRA: y = m / ||W + s B A||_row * (x Wᵀ + s x Aᵀ Bᵀ) + b, the norm a constant of the graph.
        var direction = w + b.matmul(a) * 2.0;
        var norm = linalg.vector_norm(direction, dims: [1]).detach();
        var expected = (m / norm) * (x.matmul(w.t()) + x.matmul(a.t()).matmul(b.t()) * 2.0) + bias;
        Tolerances.AssertClose(expected, y, Tolerances.DifferentKernels, "DoRA forward");

        // The gradients of the detached norm: the same as the formula's when the norm is a constant.
        y.sum().backward();
        var grads = new[] { a, b, m }.Select(p => p.grad!.clone()).ToList();
        foreach (var p in new[] { a, b, m }) p.grad!.zero_();
        expected.sum().backward();
        Tolerances.AssertClose(a.grad!, grads[0], Tolerances.DifferentKernels, "d/dA");
        Tolerances.AssertClose(b.grad!, grads[1], Tolerances.DifferentKernels, "d/dB");
        Tolerances.AssertClose(m.grad!, grads[2], Tolerances.DifferentKernels, "d/dm");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Dora_merges_to_the_unmerged_outputs_and_unmerges_back(bool transposed)
    {
        using var layer = Layer(new LoraOptions(3, 6, 0.2, ["x"], "none", UseDora: true, Init: "pissa"), transposed);
        layer.eval();
        using var x = randn(3, 5);
        using var unmerged = layer.forward(x);
        using var original = Param(layer, "weight").detach().clone();
        var (mergedWeight, _) = layer.MergedWeights();
        layer.Merge();
        Tolerances.AssertClose(mergedWeight, Param(layer, "weight"), Tolerances.Exact, "MergedWeights is what Merge writes");
        using var merged = layer.forward(x);
        Tolerances.AssertClose(unmerged, merged, Tolerances.DifferentKernels, "merged");
        layer.Unmerge();
        Tolerances.AssertClose(original, Param(layer, "weight"), Tolerances.Rounding, "unmerged weight");
        using var again = layer.forward(x);
        Tolerances.AssertClose(unmerged, again, Tolerances.DifferentKernels, "unmerged again");
    }

    [Fact]
    public void Rslora_scales_by_alpha_over_the_root_of_the_rank()
    {
        Assert.Equal(16 / 2.0, new LoraOptions(4, 16, 0, ["x"], "none", UseRsLora: true).Scaling);
        Assert.Equal(16 / 4.0, new LoraOptions(4, 16, 0, ["x"], "none").Scaling);
        using var layer = Layer(new LoraOptions(4, 16, 0, ["x"], "none", UseRsLora: true));
        using var x = randn(2, 5);
        using var y = layer.forward(x);
        using var expected = x.matmul(Param(layer, "weight").t()) + Param(layer, "bias") + x.matmul(layer.LoraA.t()).matmul(layer.LoraB.t()) * 8.0;
        Tolerances.AssertClose(expected, y, Tolerances.DifferentKernels, "rsLoRA forward");
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Pissa_starts_from_the_top_singular_triplets_and_olora_from_the_QR()
    {
        manual_seed(2);
        using var pissa = new LoraLinear(new LinearSite("x", 5, 7), new LoraOptions(3, 6, 0, ["x"], "none", Init: "pissa"));
        pissa.InitializeFromBase();
        var w = Param(pissa, "weight");
        var (u, s, vh) = linalg.svd(w, fullMatrices: false);
        var top = (u[.., ..3] * s[..3]).matmul(vh[..3]);
        Tolerances.AssertClose(top, pissa.LoraB.matmul(pissa.LoraA) * (6.0 / 3), Tolerances.DifferentKernels, "s B A is W's best rank-3 part");
        Tolerances.AssertClose(pissa.LoraA.matmul(pissa.LoraA.t()).diag(), pissa.LoraB.t().matmul(pissa.LoraB).diag(), Tolerances.DifferentKernels, "singular values split evenly");

        manual_seed(2);
        using var olora = new LoraLinear(new LinearSite("x", 5, 7), new LoraOptions(3, 6, 0, ["x"], "none", Init: "olora"));
        olora.InitializeFromBase();
        Tolerances.AssertClose(eye(3), olora.LoraB.t().matmul(olora.LoraB), Tolerances.DifferentKernels, "B = Q's first columns, orthonormal");
        Assert.True(olora.LoraA.tril(-1).eq(0).all().item<bool>(), "A = R's first rows, upper triangular");
        var (q, r) = linalg.qr(Param(olora, "weight"));
        Tolerances.AssertClose(q[.., ..3].matmul(r[..3]), olora.LoraB.matmul(olora.LoraA), Tolerances.DifferentKernels, "B A");
    }

    [Theory]
    [InlineData("pissa")]
    [InlineData("olora")]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void A_weight_derived_start_leaves_the_base_unchanged_and_its_plain_pair_gives_the_trained_layer(string init)
    {
        using var layer = Layer(new LoraOptions(3, 6, 0, ["x"], "none", Init: init, UseRsLora: init == "olora"));
        using var x = randn(4, 5);
        var w = Param(layer, "weight");
        using var y = layer.forward(x);
        // The plain pair of rank 2r over the unchanged weight, as the saved adapter and llama.cpp's apply it.
        var (a, b) = layer.PlainPair();
        Assert.Equal([6L, 5], a.shape);
        Assert.Equal([7L, 6], b.shape);
        Assert.Equal(6, layer.PlainRank);
        using var plain = x.matmul(w.t()) + Param(layer, "bias") + x.matmul(a.t()).matmul(b.t()) * layer.Scaling;
        Tolerances.AssertClose(plain, y, Tolerances.DifferentKernels, $"{init}: the plain pair over the original weight");
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void Dora_and_pissa_over_quantized_blocks_equal_the_same_layer_over_their_dequantized_weight()
    {
        // 40 rows of 64 in Q8_0 blocks: DoRA's norms go tile by tile over the blocks (10 rows a tile here), the dense layer's
        // at once; PiSSA's start comes from the blocks dequantized, and the blocks stay as they are. The products in fp32
        // tiles, so the two layers compute the same sums.
        using var tiles = SharpTune.Models.Quantized.QuantizedOps.UseTileDtype(ScalarType.Float32);
        manual_seed(4);
        var values = randn(40, 64).data<float>().ToArray();
        using var blocks = QuantizedMatrix.Quantize(GgufTensorType.Q8_0, values, 40, 64);
        var options = new LoraOptions(3, 5, 0, ["x"], "none", UseDora: true, Init: "pissa");
        using var stored = new LoraLinear(new LinearSite("x", 64, 40, Bias: false) { Stored = blocks }, options);
        using var dense = new LoraLinear(new LinearSite("x", 64, 40, Bias: false), options);
        using (no_grad()) Param(dense, "weight").copy_(SharpTune.Models.Quantized.QuantizedOps.Dequantize(blocks));
        stored.InitializeFromBase();
        dense.InitializeFromBase();
        Tolerances.AssertClose(dense.Magnitude!, stored.Magnitude!, Tolerances.Rounding, "magnitude from the blocks");
        using (no_grad())
        {
            manual_seed(5);
            using var db = randn_like(dense.LoraB) * 0.2;
            foreach (var layer in new[] { stored, dense }) { layer.LoraB.add_(db); layer.Magnitude!.mul_(1.1); }
        }
        stored.train();
        dense.train();
        using var x = randn(12, 64);
        using var expected = dense.forward(x);
        long tile = LoraInitialisation.TileBytes;
        try
        {
            LoraInitialisation.TileBytes = 10 * 64 * 4; // four tiles of 10 rows
            Tolerances.AssertClose(expected, stored.forward(x), Tolerances.DifferentKernels, "DoRA + PiSSA over Q8_0 blocks against the dense copy");
        }
        finally
        {
            LoraInitialisation.TileBytes = tile;
        }
    }

    [Fact]
    public void Adapter_configs_name_the_variants_as_PEFT_does_and_read_back()
    {
        var settings = new PeftSettings { LoraR = 3, LoraAlpha = 6, LoraDora = true, LoraRsLora = true, LoraInit = "pissa", LoraTargets = ["query", "value"] };
        using var temp = new TestModels.TempFolder();
        using var model = Build(Method, settings, Head(TaskKind.SingleLabel));
        Perturb(model);
        Method.SaveAdapter(temp.Path, model, settings, "tiny");
        var config = JsonNode.Parse(File.ReadAllText(temp.File(AdapterFiles.ConfigFile)))!.AsObject();
        Assert.True(config["use_dora"]!.GetValue<bool>());
        Assert.True(config["use_rslora"]!.GetValue<bool>());
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());           // converted: plain LoRA over the base
        Assert.Equal(6, config["r"]!.GetValue<int>());
        Assert.Equal(6 * Math.Sqrt(2), config["lora_alpha"]!.GetValue<double>(), 12); // alpha/sqrt(r) unchanged
        var shapes = SafeTensors.ReadHeader(temp.File(AdapterFiles.WeightsFile)).Entries.ToDictionary(e => e.Name, e => e.Shape);
        Assert.Equal([32L], shapes["base_model.model.bert.encoder.layer.1.attention.self.value.lora_magnitude_vector"]);
        Assert.Equal([6L, 32], shapes["base_model.model.bert.encoder.layer.1.attention.self.value.lora_A.weight"]);
        Assert.Equal([32L, 6], shapes["base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight"]);

        var reread = Method.ReadSettings(config, "adapter_config.json");
        Assert.Equal((6, true, true, LoraOptions.Kaiming), (reread.LoraR, reread.LoraDora, reread.LoraRsLora, reread.LoraInit));
        Assert.Equal(LoraOptions.From(settings, TestModels.TinyConfig).Scaling, LoraOptions.From(reread, TestModels.TinyConfig).Scaling, 12);

        using var gaussian = new TestModels.TempFolder();
        var plain = new PeftSettings { LoraInit = "gaussian" };
        using var other = Build(Method, plain, Head(TaskKind.SingleLabel));
        Method.SaveAdapter(gaussian.Path, other, plain, "tiny");
        var written = JsonNode.Parse(File.ReadAllText(gaussian.File(AdapterFiles.ConfigFile)))!.AsObject();
        Assert.Equal("gaussian", written["init_lora_weights"]!.GetValue<string>());
        Assert.False(written.ContainsKey("use_dora"));   // written only when on: PEFT before 0.9 rejects the key
        Assert.False(written.ContainsKey("use_rslora"));
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void An_unconverted_PEFT_pissa_adapter_loads_over_the_base_less_its_start()
    {
        // PEFT saved without path_initial_model_for_weight_conversion: init_lora_weights "pissa", the trained pair of rank r,
        // meant for the residual base. Loading rebuilds the start from the base, as PEFT does.
        var settings = new PeftSettings { LoraR = 3, LoraAlpha = 5, LoraInit = "pissa", LoraTargets = ["query", "value"] };
        using var trained = Build(Method, settings, Head(TaskKind.SingleLabel));
        Perturb(trained);
        using var temp = new TestModels.TempFolder();
        var tensors = trained.named_parameters().Where(p => p.name.Contains(".lora_"))
            .ToDictionary(p => AdapterTensors.PeftKey(p.name), p => (Tensor)p.parameter);
        foreach (var (key, tensor) in AdapterFiles.HeadTensors(trained)) tensors[key] = tensor;
        AdapterFiles.Write(temp.Path, new Dictionary<string, object?>
        {
            ["peft_type"] = "LORA", ["r"] = 3, ["lora_alpha"] = 5, ["init_lora_weights"] = "pissa", ["target_modules"] = new[] { "query", "value" },
            ["modules_to_save"] = new[] { "classifier" }, ["task_type"] = "SEQ_CLS",
        }, tensors);
        var reread = Method.ReadSettings(AdapterFiles.ReadConfig(temp.Path), "adapter_config.json");
        Assert.Equal("pissa", reread.LoraInit);
        using var fresh = Build(Method, reread, Head(TaskKind.SingleLabel), headSeed: 99);
        Method.LoadAdapter(temp.Path, fresh);
        var data = ToyData(TaskKind.SingleLabel);
        using var expected = Logits(trained, data);
        using var actual = Logits(fresh, data);
        Tolerances.AssertClose(expected, actual, Tolerances.Exact, "unconverted PiSSA adapter");

        var config = AdapterFiles.ReadConfig(temp.Path);
        config["init_lora_weights"] = "pissa_niter_4";
        var error = Assert.Throws<InvalidDataException>(() => Method.ReadSettings(config, "adapter_config.json"));
        Assert.Contains("init_lora_weights", error.Message);
        Assert.Contains("pissa_niter_4", error.Message);
    }

    [Theory]
    [InlineData("adamw")]
    [InlineData("adam")]
    [InlineData("sgd")]
    public void Loraplus_puts_B_and_vectors_at_the_ratio_and_the_rest_at_the_rate(string optimizer)
    {
        var settings = new PeftSettings { LoraR = 3, LoraDora = true };
        using var model = Build(Method, settings, Head(TaskKind.SingleLabel));
        using var plus = OptimizerFactory.Create(optimizer, model, 1e-3, 0.01, 0.9, loraPlusLrRatio: 16);
        var rates = new Dictionary<string, double>();
        var byTensor = model.named_parameters().ToDictionary(p => p.parameter.Handle, p => p.name);
        foreach (var group in plus.ParamGroups)
            foreach (var parameter in ((TorchSharp.Modules.ParamGroup)group).Parameters)
                rates[byTensor[parameter.Handle]] = group.LearningRate;
        Assert.Equal(model.parameters().Count(p => p.requires_grad), rates.Count);
        foreach (var (name, rate) in rates)
        {
            bool fast = name.Contains(".lora_B.") || name.EndsWith(".lora_magnitude_vector") || name == "classifier.bias";
            Assert.True(Math.Abs(rate - (fast ? 16e-3 : 1e-3)) < 1e-15, $"{optimizer}: {name} at {rate}");
        }
        using var single = OptimizerFactory.Create(optimizer, model, 1e-3, 0.01, 0.9);
        Assert.All(single.ParamGroups, g => Assert.Equal(1e-3, g.LearningRate));

        using var head = Build(PeftRegistry.Get("ia3"), new PeftSettings(), Head(TaskKind.SingleLabel));
        Assert.Contains("--loraplus-lr-ratio", Assert.Throws<ArgumentException>(() => OptimizerFactory.Create(optimizer, head, 1e-3, 0, 0, loraPlusLrRatio: 4)).Message);
    }

    [Fact]
    public void Variant_options_are_validated_and_named()
    {
        var run = new FineTuneOptions { Train = "train.csv" };
        Assert.Contains("--lora-dora", Assert.Throws<ArgumentException>(() => (run with { Method = "ia3", Peft = new PeftSettings { LoraDora = true } }).Validate()).Message);
        Assert.Contains("--method lora only", Assert.Throws<ArgumentException>(() => (run with { Method = "full", Peft = new PeftSettings { LoraInit = "pissa" } }).Validate()).Message);
        Assert.Contains("--loraplus-lr-ratio", Assert.Throws<ArgumentException>(() => (run with { Method = "prefix", Training = new TrainingOptions { LoraPlusLrRatio = 16 } }).Validate()).Message);
        foreach (double ratio in new[] { 0.0, -2, double.NaN })
            Assert.Contains("--loraplus-lr-ratio", Assert.Throws<ArgumentException>(() => (run with { Method = "lora", Training = new TrainingOptions { LoraPlusLrRatio = ratio } }).Validate()).Message);
        (run with { Method = "lora", Peft = new PeftSettings { LoraDora = true, LoraRsLora = true, LoraInit = "olora" }, Training = new TrainingOptions { LoraPlusLrRatio = 16 } }).Validate();

        Assert.Contains("--lora-init", Assert.Throws<ArgumentException>(() => Method.Validate(new PeftSettings { LoraInit = "svd" }, TestModels.TinyConfig)).Message);
        // The tiny encoder's intermediate is 37 wide: PiSSA cannot take 40 singular vectors of it.
        var tooWide = Assert.Throws<ArgumentException>(() => Method.Validate(new PeftSettings { LoraR = 40, LoraInit = "pissa", LoraTargets = ["intermediate.dense"] }, TestModels.TinyConfig));
        Assert.Contains("--lora-r 40", tooWide.Message);
        Assert.Contains("intermediate.dense", tooWide.Message);
        Method.Validate(new PeftSettings { LoraR = 40, LoraTargets = ["intermediate.dense"] }, TestModels.TinyConfig);
    }

    [Fact]
    public void A_layer_that_starts_from_its_weight_refuses_to_run_before_it_is_initialised()
    {
        using var layer = new LoraLinear(new LinearSite("x", 5, 7), new LoraOptions(3, 6, 0, ["x"], "none", UseDora: true));
        using var x = randn(2, 5);
        Assert.Contains("LoraMethod.Freeze", Assert.Throws<InvalidOperationException>(() => layer.forward(x)).Message);
    }
}
