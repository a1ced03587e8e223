using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Gguf;
using SharpTune.Peft.Lora;
using static TorchSharp.torch;

namespace SharpTune.ModelFolders.DecoderExports;

/// <summary>Writes LoRA layers as llama.cpp's adapter GGUF (as <c>convert_lora_to_gguf.py</c> does, and <c>llama-adapter.cpp</c> reads).</summary>
static class LoraGgufWriter
{
    /// <summary>The model's weights without the LoRA pairs: each LoRA layer's own (unmerged) weight and bias, everything else as it is.</summary>
    public static Dictionary<string, Tensor> BaseWeights(IReadOnlyDictionary<string, Tensor> state, IEnumerable<string> loraPaths)
    {
        var paths = loraPaths.ToHashSet(StringComparer.Ordinal);
        return state.Where(kv =>
        {
            int dot = kv.Key.LastIndexOf('.');
            bool ownWeight = dot > 0 && paths.Contains(kv.Key[..dot]);
            return ownWeight || !paths.Any(p => kv.Key.StartsWith(p + ".", StringComparison.Ordinal));
        }).ToDictionary(kv => kv.Key, kv => kv.Value);
    }

    /// <summary>Writes the adapter file; returns notes for the user.</summary>
    public static List<string> Write(GgufDecoderLayout layout, IReadOnlyDictionary<string, LoraLinear> layers, GgufTensorType type, string path)
    {
        // llama.cpp scales each pair by alpha / r with one alpha per file and r read from lora_b: a layer whose own
        // alpha differs has the ratio folded into its lora_b, so every layer keeps its own alpha / r.
        double alpha = layers.Values.First().Scaling * layers.Values.First().Rank;
        var w = new GgufWriter()
            .Set("general.architecture", layout.Architecture)
            .Set("general.type", "adapter")
            .Set("general.name", Path.GetFileNameWithoutExtension(path))
            .Set("adapter.type", "lora")
            .Set("adapter.lora.alpha", (float)alpha);
        var notes = new List<string>();
        int folded = 0;
        using var scope = NewDisposeScope();
        var order = layout.Tensors.Select((t, i) => (t.HfKey, i)).ToDictionary(x => x.HfKey, x => x.i);
        foreach (string name in layers.Keys)
            if (!order.ContainsKey(name + ".weight"))
                throw new NotSupportedException($"{name} has no tensor in a {layout.Architecture} GGUF, so llama.cpp cannot apply a LoRA pair to it");
        foreach (var (name, layer) in layers.OrderBy(l => order[l.Key + ".weight"])) // the base file's tensor order
        {
            var mapping = layout.ByHfKey[name + ".weight"];
            var a = layer.LoraA.detach();                                                      // (r, in)
            var b = layer.LoraB.detach();                                                      // (out, r)
            double layerAlpha = layer.Scaling * layer.Rank;
            if (Math.Abs(layerAlpha - alpha) > 1e-9 * alpha)
            {
                b = b * (layerAlpha / alpha);
                folded++;
            }
            w.AddTensor(mapping.GgufName + ".lora_a", a, type);
            w.AddTensor(mapping.GgufName + ".lora_b", mapping.LoraBToFile(b), type);
        }
        w.Save(path);
        notes.Add($"{layers.Count} LoRA pair(s), alpha {alpha:G6}, rank {string.Join("/", layers.Values.Select(l => l.Rank).Distinct())}");
        if (folded > 0) notes.Add($"{folded} layer(s) with another alpha: the ratio is folded into their lora_b");
        return notes;
    }
}
