using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Training;
using Xunit.Abstractions;

namespace SharpTune.Tests.Peft;

/// <summary>Trainable fractions of the prompt methods on the real built-in minilm (6 layers, hidden 384, 12 heads).</summary>
[Collection(PromptMethodsCollection.Name)]
public class PromptFractionTests(ITestOutputHelper output)
{
    [Fact]
    public void Trainable_fractions_on_minilm()
    {
        using var pretrained = PretrainedEncoder.Load("minilm");
        var encoder = pretrained.Model;
        var head = new HeadOptions(TaskKind.SingleLabel, 2, UsePooler: encoder.HasPooler);
        var defaults = new PeftSettings();
        var rows = new (string Method, PeftSettings Settings)[]
        {
            ("prompt", defaults),
            ("ptuning", defaults),
            ("ptuning", defaults with { EncoderHidden = 384 }),
            ("ptuning", defaults with { EncoderHidden = 128 }),
            ("ptuning", defaults with { EncoderHidden = 222 }),
            ("ptuning", defaults with { EncoderHidden = 223 }),
            ("ptuning", defaults with { EncoderType = "lstm", EncoderHidden = 128 }),
            ("prefix", defaults),
            ("prefix", defaults with { EncoderHidden = 512 }),
            ("prefix", defaults with { EncoderHidden = 43 }),
            ("prefix", defaults with { EncoderHidden = 44 }),
            ("ptuning-v2", defaults),
        };
        var summaries = new Dictionary<string, ParameterSummary>();
        foreach (var (name, settings) in rows)
        {
            var method = PeftRegistry.Get(name);
            var model = new TaskModel(encoder, head, method.CreatePromptEncoder(settings, encoder));
            method.Freeze(model, settings);
            var summary = ParameterSummary.Of(model);
            string label = $"{name} P={settings.VirtualTokens} type={settings.EncoderType} h={settings.EncoderHidden?.ToString() ?? "default"}";
            summaries[label] = summary;
            output.WriteLine($"{label}: {summary} = {summary.Fraction * 100:F4} %");
        }
        // With SharpTune's defaults every prompt method trains under 1 % of minilm. PEFT's own defaults (P-tuning
        // h = H = 384, prefix projection 512) exceed it on a 22.7M model; the asserts record where the line falls.
        Assert.True(summaries["prompt P=20 type=mlp h=default"].Fraction < 0.01);
        Assert.True(summaries["ptuning P=20 type=mlp h=default"].Fraction < 0.01);
        Assert.True(summaries["prefix P=20 type=mlp h=default"].Fraction < 0.01);
        Assert.True(summaries["ptuning P=20 type=mlp h=384"].Fraction >= 0.01);
        Assert.True(summaries["prefix P=20 type=mlp h=512"].Fraction >= 0.01);
        Assert.True(summaries["ptuning-v2 P=20 type=mlp h=default"].Fraction < 0.01);
        Assert.True(summaries["ptuning P=20 type=mlp h=128"].Fraction < 0.01); // METHODS.md's typical h
        Assert.True(summaries["ptuning P=20 type=mlp h=222"].Fraction < 0.01); // the largest h under 1 %
        Assert.True(summaries["ptuning P=20 type=mlp h=223"].Fraction >= 0.01);
        Assert.True(summaries["prefix P=20 type=mlp h=43"].Fraction < 0.01); // the largest projection under 1 %
        Assert.True(summaries["prefix P=20 type=mlp h=44"].Fraction >= 0.01);
        Assert.Equal(20 * 384 + 3 * (384 * 384 + 384) + 770, summaries["ptuning P=20 type=mlp h=384"].Trainable);
        Assert.Equal(20 * 384 + (384 * 128 + 128) + (128 * 128 + 128) + (128 * 384 + 384) + 770, summaries["ptuning P=20 type=mlp h=default"].Trainable);
        Assert.Equal(20 * 384 + (384 * 512 + 512) + (512 * 4608 + 4608) + 770, summaries["prefix P=20 type=mlp h=512"].Trainable);
        Assert.Equal(20 * 384 + (384 * 32 + 32) + (32 * 4608 + 4608) + 770, summaries["prefix P=20 type=mlp h=default"].Trainable);
    }
}
