using SharpTune.Generation;
using SharpTune.Heads;
using SharpTune.Models;
using SharpTune.Models.Decoders;
using SharpTune.Models.Decoders.Common;
using SharpTune.Peft;
using SharpTune.Tests.Models.Decoders;
using static TorchSharp.torch;

namespace SharpTune.Tests.Heads;

/// <summary>
/// Every method on every decoder family, the failures PEFT users report most (peft#2131, #2379, #2123, #2449, #1962):
/// generation with the key/value cache equals generation recomputed from scratch at every step, and a left-padded
/// batch equals its prompts one by one. Adapters are randomised first, so an untrained (no-op) adapter cannot pass.
/// </summary>
public class CausalLmMethodTests
{
    public static TheoryData<string, string> Matrix()
    {
        var data = new TheoryData<string, string>();
        foreach (string family in new[] { "llama", "qwen2", "gpt2", "gemma" })
            foreach (string method in new[] { "lora", "ia3", "bitfit", "prompt", "ptuning", "ptuning-lstm", "prefix", "ptuning-v2" })
                if (!(method == "bitfit" && family is "llama" or "gemma")) data.Add(family, method);   // no biases to train
        return data;
    }

    static (IPeftMethod Method, PeftSettings Settings) Method(string name) => name switch
    {
        "lora" => (PeftRegistry.Get("lora"), new PeftSettings { LoraR = 3, LoraAlpha = 5, LoraTargets = [LinearTargets.AllLinear] }),
        "ia3" => (PeftRegistry.Get("ia3"), new PeftSettings()),
        "bitfit" => (PeftRegistry.Get("bitfit"), new PeftSettings()),
        "ptuning-lstm" => (PeftRegistry.Get("ptuning"), new PeftSettings { VirtualTokens = 3, EncoderType = "lstm", EncoderHidden = 7 }),
        "prompt" or "ptuning" or "prefix" or "ptuning-v2" => (PeftRegistry.Get(name), new PeftSettings { VirtualTokens = 3, EncoderHidden = 9, PrefixDropout = 0 }),
        _ => throw new ArgumentException(name),
    };

    /// <summary>A tiny decoder with the method built in and every trainable tensor moved off its initial value.</summary>
    internal static CausalLmModel Build(string family, string methodName, int seed = 3)
    {
        var (method, settings) = Method(methodName);
        var config = TinyDecoders.Config(family);
        var shape = (IBackboneShape)DecoderFamilies.ForConfig(config).ParseConfig(config, "test");
        manual_seed(seed);
        var decoder = PretrainedDecoder.Create(config, linears: method.Linears(settings, shape, DecoderLinears.Plain));
        var model = new CausalLmModel(decoder, method.CreatePromptEncoder(settings, shape, decoder.WordEmbeddings));
        method.Freeze(model, settings);
        using (no_grad())
            foreach (var (_, parameter) in model.named_parameters().Where(p => p.parameter.requires_grad))
                parameter.add_(randn_like(parameter) * 0.3);
        model.eval();
        return model;
    }

    static readonly int[][] Prompts = [[1, 17, 23, 5, 9, 41], [1, 8], [1, 60, 61, 62]];

    /// <summary>Greedy decoding with no cache: the whole sequence through the model at every step.</summary>
    static List<int> FromScratch(ICausalLanguageModel model, IReadOnlyList<int> prompt, int steps)
    {
        var sequence = prompt.ToList();
        using var noGrad = no_grad();
        for (int i = 0; i < steps; i++)
        {
            using var scope = NewDisposeScope();
            var logits = model.Forward(tensor(sequence.Select(t => (long)t).ToArray(), [1, sequence.Count]));
            sequence.Add((int)logits[0, -1].argmax().item<long>());
        }
        return sequence.Skip(prompt.Count).ToList();
    }

    [Theory]
    [MemberData(nameof(Matrix))]
    public void Cached_generation_equals_recomputation_and_a_padded_batch_equals_its_prompts(string family, string method)
    {
        using var model = Build(family, method);
        const int steps = 6;
        var generator = new TextGenerator(model, new GenerationOptions { Greedy = true, MaxNewTokens = steps }) { PadId = 0 };
        var batch = generator.Generate(Prompts);
        for (int p = 0; p < Prompts.Length; p++)
        {
            var alone = generator.Generate([Prompts[p]])[0].TokenIds;
            Assert.Equal(FromScratch(model, Prompts[p], steps), alone);
            Assert.Equal(alone, batch[p].TokenIds);
        }
    }

    [Theory]
    [MemberData(nameof(Matrix))]
    public void The_method_changes_the_logits_and_its_adapter_round_trips(string family, string method)
    {
        var (peft, settings) = Method(method);
        using var model = Build(family, method);
        using var plain = TinyDecoders.Create(family, seed: 3);
        using var noGrad = no_grad();
        var ids = tensor(new long[] { 1, 17, 23, 5, 9 }, [1, 5]);
        var adapted = model.Forward(ids);
        using var temp = new TestModels.TempFolder();
        string folder = temp.File("adapter");
        peft.SaveAdapter(folder, model, settings, "tiny");
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(folder, AdapterFiles.ConfigFile)))!;
        Assert.Equal("CAUSAL_LM", config["task_type"]!.GetValue<string>());

        using var reloaded = Build(family, method, seed: 99); // other random adapter values, then the saved ones loaded
        peft.LoadAdapter(folder, reloaded);
        // The frozen base differs between the two builds only through the seed: copy it so the adapter alone decides.
        var source = model.state_dict();
        foreach (var (name, parameter) in reloaded.named_parameters().Where(p => !p.parameter.requires_grad))
            parameter.copy_(source[name]);
        Tolerances.AssertClose(adapted, reloaded.Forward(ids), Tolerances.Exact, "reloaded adapter");
        Assert.Equal(adapted.shape, new long[] { 1, 5, TinyDecoders.Vocab });
        Assert.True(adapted.isfinite().all().item<bool>());
    }
}
