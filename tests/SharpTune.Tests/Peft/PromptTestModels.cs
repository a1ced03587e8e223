using SharpTune.Heads;
using SharpTune.Models.Bert;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>The four prompt methods on the tiny model, with odd sizes (P 5, h 11) so shape bugs show.</summary>
internal static class PromptTestModels
{
    /// <summary>Theory cases: a method name, with <c>:lstm</c> for P-tuning's LSTM encoder.</summary>
    public static readonly TheoryData<string> Cases = new() { "prompt", "ptuning", "ptuning:lstm", "prefix", "ptuning-v2" };

    public static (IPeftMethod Method, PeftSettings Settings) Resolve(string testCase)
    {
        string[] parts = testCase.Split(':');
        var settings = new PeftSettings { VirtualTokens = 5, EncoderHidden = 11, EncoderType = parts.Length > 1 ? parts[1] : "mlp" };
        return (PeftRegistry.Get(parts[0]), settings);
    }

    // Test classes run in parallel and torch's generator is global, so a seed alone does not promise two
    // models the same backbone: every model copies this one.
    static readonly Lazy<Dictionary<string, Tensor>> Backbone = new(() =>
    {
        using var model = TestModels.TinyModel();
        return model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
    });

    /// <summary>The tiny encoder, always with the same weights.</summary>
    public static BertModel TinyEncoder()
    {
        var encoder = new BertModel(TestModels.TinyConfig);
        using (no_grad())
            foreach (var (key, value) in encoder.state_dict()) value.copy_(Backbone.Value[key]);
        encoder.eval();
        return encoder;
    }

    /// <summary>A task model with the method's prompt module, frozen as the method says, in eval mode.</summary>
    public static TaskModel Build(IPeftMethod method, PeftSettings settings, HeadOptions head, int seed = 3)
    {
        var encoder = TinyEncoder();
        manual_seed(seed);
        var model = new TaskModel(encoder, head, method.CreatePromptEncoder(settings, encoder));
        method.Freeze(model, settings);
        model.eval();
        return model;
    }

    public static bool IsInputSide(IPeftMethod method) => method.Name is "prompt" or "ptuning";

    /// <summary>Right-padded inputs (pad id 0); for token tasks every real token after [CLS] up to [SEP] is a word.</summary>
    public static ModelInputs Inputs(params long[][] sentences)
    {
        int batch = sentences.Length, length = sentences.Max(s => s.Length), words = length - 2;
        var ids = new long[batch * length];
        var mask = new long[batch * length];
        var positions = new long[batch * words];
        var wordMask = new bool[batch * words];
        for (int b = 0; b < batch; b++)
        {
            for (int t = 0; t < sentences[b].Length; t++)
            {
                ids[b * length + t] = sentences[b][t];
                mask[b * length + t] = 1;
            }
            for (int w = 0; w < words; w++)
            {
                bool real = w < sentences[b].Length - 2;
                positions[b * words + w] = real ? w + 1 : 0;
                wordMask[b * words + w] = real;
            }
        }
        return new ModelInputs(tensor(ids, [batch, length]), tensor(mask, [batch, length]), zeros(batch, length, ScalarType.Int64),
            tensor(positions, [batch, words]), tensor(wordMask, [batch, words]));
    }
}

/// <summary>
/// torch's generator is global: tests that seed it and draw from it must not interleave with other classes
/// doing the same (TrainerTests' resume test compares losses exactly), so these run on their own.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class PromptMethodsCollection
{
    public const string Name = "Prompt methods (global torch generator)";
}
