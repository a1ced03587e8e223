using SharpTune.Models.Decoders.Gguf;
using System.Text.Json.Nodes;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders;
using SharpTune.Models;
using SharpTune.Models.Decoders.Common;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Checkpoints.Gguf;
using static TorchSharp.torch;

namespace SharpTune.Tests.ModelFolders.DecoderExports;

/// <summary>
/// Tiny random decoders with LoRA layers for the export tests: a base written as an F32 GGUF (or a Hugging Face folder),
/// a model built from it with LoRA (or IA3) layers through the decoder's Linear factory, and lora_B drawn at random, so the
/// adapter changes the logits by far more than rounding.
/// </summary>
static class ExportTestModels
{
    /// <summary>Odd sizes, grouped-query attention (6 heads over 2), a vocabulary with the 256 byte tokens llama.cpp's tokenizer wants.</summary>
    public static readonly TinyDecoderSizes Sizes = new(Vocab: 301, Hidden: 48, Layers: 2, Heads: 6, KvHeads: 2, Intermediate: 83, Positions: 96);

    public static readonly int[] Tokens = [1, 17, 260, 5, 99, 42, 300, 3, 128, 77, 260, 261, 9];

    /// <summary>Every Linear of a Llama block.</summary>
    public static readonly string[] AllLinears = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>Matrices at a trained model's scale (1/sqrt of the input size), so logits are of order one.</summary>
    public static Dictionary<string, Tensor> Scaled(Dictionary<string, Tensor> hf) => hf.ToDictionary(kv => kv.Key,
        kv => kv.Value.dim() == 2 ? kv.Value / MathF.Sqrt(kv.Value.shape[1]) : kv.Value);

    /// <summary>An F32 base GGUF of <paramref name="family"/> (llama or qwen2) with a SentencePiece-style vocabulary.</summary>
    public static string WriteBaseGguf(string path, string family, bool tied = false, TinyDecoderSizes? sizes = null)
    {
        var s = sizes ?? Sizes;
        GgufTestModels.WriteLlama(path, family, s, Scaled(GgufTestModels.HfLlama(s, bias: family == "qwen2", tied: tied)));
        return path;
    }

    /// <summary>LoRA on the layers for whose last name <paramref name="options"/> gives options, each with its own.</summary>
    public static LinearFactory Lora(Func<string, LoraOptions?> options) => site =>
        options(site.Path[(site.Path.LastIndexOf('.') + 1)..]) is { } o ? new LoraLinear(site, o) : DecoderLinears.Plain(site);

    /// <summary>LoRA r 4, alpha 16 on <paramref name="targets"/>.</summary>
    public static LinearFactory Lora(params string[] targets) =>
        Lora(name => targets.Contains(name) ? new LoraOptions(4, 16, 0, targets, "none") : null);

    /// <summary>
    /// A model of <paramref name="config"/> built with <paramref name="linears"/>, the base weights copied in by key (every
    /// key not an adapter's must be filled), lora_A drawn from N(0, 1/in), lora_B from N(0, 0.15²), IA3 vectors from U(0.5, 1.5), in eval mode.
    /// </summary>
    public static ICausalLanguageModel Adapted(JsonObject config, IEnumerable<(string Key, Tensor Value)> baseWeights,
        LinearFactory linears, int seed = 3)
    {
        manual_seed(seed);
        var model = PretrainedDecoder.Create(config, linears: linears);
        var state = model.Module.state_dict();
        var filled = new HashSet<string>();
        using (no_grad())
        {
            foreach (var (key, value) in baseWeights)
            {
                state[key].copy_(value);
                filled.Add(key);
            }
            foreach (var (key, value) in state)
            {
                if (key.EndsWith(".lora_A.weight", StringComparison.Ordinal)) value.normal_(0, 1 / Math.Sqrt(value.shape[1]));
                else if (key.EndsWith(".lora_B.weight", StringComparison.Ordinal)) value.normal_(0, 0.15);
                else if (key.EndsWith(".ia3_l", StringComparison.Ordinal)) value.uniform_(0.5, 1.5);
                else Assert.True(filled.Contains(key), $"the base has no {key}");
            }
        }
        model.Module.eval();
        return model;
    }

    /// <summary><see cref="Adapted"/> from a GGUF base.</summary>
    public static ICausalLanguageModel Adapted(string baseGguf, LinearFactory linears, int seed = 3)
    {
        var map = GgufModelMap.Open(baseGguf);
        return Adapted(map.Config, map.ReadTensors(), linears, seed);
    }

    /// <summary>Logits (T, V) of one sequence.</summary>
    public static Tensor Logits(ICausalLanguageModel model, IReadOnlyList<int> tokens)
    {
        using var noGrad = no_grad();
        using var ids = tensor(tokens.Select(t => (long)t).ToArray()).unsqueeze(0);
        using var logits = model.Forward(ids);
        return logits[0].clone();
    }

    public static float[] Row(Tensor logits, int t) => logits[t].data<float>().ToArray();
}
