using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Models.Decoders;
using SharpTune.Peft.Lora;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models.Decoders;

/// <summary>What the decoder memory tests share: tiny models built for training, with or without LoRA, and one loss and backward.</summary>
static class DecoderTraining
{
    /// <summary>The tiny config of <paramref name="family"/> with every dropout set to <paramref name="dropout"/>.</summary>
    public static JsonObject Config(string family, double dropout)
    {
        var config = TinyDecoders.Config(family);
        if (family == "gpt2")
            foreach (var key in new[] { "resid_pdrop", "embd_pdrop", "attn_pdrop" }) config[key] = dropout;
        else
            config["attention_dropout"] = dropout;
        return config;
    }

    /// <summary>LoRA (r 3, alpha 5) on every Linear (GPT-2: Conv1D) layer of the blocks; with <paramref name="dora"/>, DoRA from a PiSSA start.</summary>
    public static LinearFactory Lora(double dropout = 0, bool dora = false) =>
        site => new LoraLinear(site, new LoraOptions(3, 5, dropout, ["all"], "none", UseDora: dora, Init: dora ? "pissa" : LoraOptions.Kaiming));

    /// <summary>
    /// A seeded model in training mode. With LoRA only lora_A/lora_B train, and lora_B is drawn at random (PEFT starts
    /// it at zero, which would make every lora_A gradient zero and the comparison empty).
    /// </summary>
    public static ICausalLanguageModel Create(string family, double dropout = 0, bool lora = false, int seed = 7, bool dora = false)
    {
        manual_seed(seed);
        var model = PretrainedDecoder.Create(Config(family, dropout), linears: lora ? Lora(dropout, dora) : null);
        if (lora)
        {
            foreach (var layer in model.Module.modules().OfType<LoraLinear>()) layer.InitializeFromBase();
            using var noGrad = no_grad();
            foreach (var (name, parameter) in model.Module.named_parameters())
            {
                bool adapter = name.Contains(".lora_", StringComparison.Ordinal);
                parameter.requires_grad = adapter;
                if (name.Contains(".lora_B.", StringComparison.Ordinal)) parameter.normal_(0, 0.1);
            }
        }
        model.Module.train();
        return model;
    }

    /// <summary>Mean next-token cross-entropy from the full logits, as transformers computes it (float32).</summary>
    public static Tensor FullLogitsLoss(ICausalLanguageModel model, Tensor ids)
    {
        using var scope = NewDisposeScope();
        var logits = model.Forward(ids);                                                        // (B, T, V)
        long vocab = logits.shape[2];
        return nn.functional.cross_entropy(logits[.., ..^1].reshape(-1, vocab), ids[.., 1..].reshape(-1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Seeds the generator, runs <paramref name="loss"/> and its backward, and returns the loss and a copy of every
    /// gradient by parameter name; the gradients are then cleared.
    /// </summary>
    public static (float Loss, Dictionary<string, Tensor> Grads) LossAndGrads(ICausalLanguageModel model, Func<Tensor> loss, int seed = 5)
    {
        model.Module.zero_grad();
        manual_seed(seed);
        float value;
        using (var scope = NewDisposeScope())
        {
            var l = loss();
            l.backward();
            value = l.item<float>();
        }
        var grads = new Dictionary<string, Tensor>();
        foreach (var (name, parameter) in model.Module.named_parameters())
            if (parameter.grad is { } g) grads[name] = g.detach().clone();
        model.Module.zero_grad();
        return (value, grads);
    }

    /// <summary>Both sets hold gradients for the same parameters, equal within <paramref name="tolerance"/>.</summary>
    public static void AssertSameGrads(Dictionary<string, Tensor> expected, Dictionary<string, Tensor> actual, double tolerance, string what)
    {
        Assert.True(expected.Count > 0, $"{what}: no parameter got a gradient");
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, grad) in expected) Tolerances.AssertClose(grad, actual[name], tolerance, $"{what}: {name}.grad");
    }
}
