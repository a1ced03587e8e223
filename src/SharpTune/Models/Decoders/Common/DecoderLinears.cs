using SharpTune.Models.Quantized;
using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// The Linear layers of a decoder. Each block asks a <see cref="LinearFactory"/> for its layers by Hugging Face module
/// path (such as <c>model.layers.3.self_attn.q_proj</c>); methods that wrap Linear layers (LoRA, IA3) pass their own.
/// </summary>
public static class DecoderLinears
{
    /// <summary>Plain layers: <c>nn.Linear</c>, GPT-2's transposed Conv1D layout, or a frozen layer over stored blocks.</summary>
    public static LinearFactory Plain { get; } = site => site.Stored is not null ? new StoredLinear(site)
        : site.Transposed ? new TransposedLinear(site.InFeatures, site.OutFeatures, site.Bias)
        : nn.Linear(site.InFeatures, site.OutFeatures, hasBias: site.Bias);

    /// <summary>The Linear layers of a Llama-layout block (attention then gated MLP), in build order.</summary>
    public static IEnumerable<LinearSite> LlamaLayer(string path, AttentionShape attention, int intermediateSize, bool mlpBias)
    {
        int h = attention.HiddenSize, q = attention.Heads * attention.HeadDim, kv = attention.KeyValueHeads * attention.HeadDim;
        yield return new($"{path}.self_attn.q_proj", h, q, attention.QkvBias);
        yield return new($"{path}.self_attn.k_proj", h, kv, attention.QkvBias);
        yield return new($"{path}.self_attn.v_proj", h, kv, attention.QkvBias);
        yield return new($"{path}.self_attn.o_proj", q, h, attention.OutputBias);
        yield return new($"{path}.mlp.gate_proj", h, intermediateSize, mlpBias);
        yield return new($"{path}.mlp.up_proj", h, intermediateSize, mlpBias);
        yield return new($"{path}.mlp.down_proj", intermediateSize, h, mlpBias);
    }
}
